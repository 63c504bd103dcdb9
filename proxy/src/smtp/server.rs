//! The SMTP submission server core: what a client sees before AUTH, as a sans-IO state machine.
//!
//! The driver feeds the client's bytes in ([`ServerCore::feed`], any chunking), asks for events
//! ([`ServerCore::next_event`]) and writes [`ServerCore::take_output`] to the client. The core
//! greets at once, answers EHLO/HELO (the upstream's keywords minus AUTH and STARTTLS, plus its
//! own `AUTH PLAIN LOGIN` and `STARTTLS`), STARTTLS, NOOP, RSET, HELP, VRFY, EXPN and QUIT
//! itself, refuses the mail transaction before AUTH, and turns AUTH PLAIN or AUTH LOGIN into a
//! [`Login`] event. Then it reads nothing more until the driver either reports the verdict
//! ([`ServerCore::login_failed`]: the core answers `535`/`454` and goes on with the commands the
//! client pipelined, answering them here) or takes those commands byte for byte
//! ([`ServerCore::into_leftover`]) to send them upstream (RFC 4954 §4 lets a client pipeline
//! `MAIL`/`RCPT`/`DATA` behind `AUTH PLAIN <initial response>`). The upstream's `235` is the
//! answer to the AUTH; the core never writes one.
//!
//! Decisions where the RFCs leave a choice:
//! - **Line limits**: command lines may be 2048 octets (RFC 5321 §4.5.3.1.4 says 512, but
//!   lenient clients send more, and nothing here needs the smaller bound); an `AUTH` command line
//!   and SASL response lines 12288 (RFC 4954 §4), so a long password also fits in an initial
//!   response. A longer line gets `500 5.5.6` at once and the rest of it is dropped; one that
//!   goes on past 64 KiB closes the connection.
//! - **Bare LF** ends a line (so nobody hangs) and the line is refused with `500 5.5.2`: RFC 5321
//!   §2.3.8 wants CRLF, and every client that logs in sends it.
//! - **HELO leniency** (`helo_auth`, on by default): printers and scanners send `HELO` then
//!   `AUTH LOGIN` (protocols.md §3.1), which RFC 4954 does not allow; without it that AUTH gets
//!   `503 5.5.1` like an AUTH before any greeting.
//! - **EHLO argument**: missing, with control characters, not UTF-8 or over 255 octets: `501
//!   5.5.4` (row 40). Otherwise accepted; it goes upstream only when it is printable ASCII
//!   without spaces ([`Login::helo`]), and the reply never echoes it.
//! - **VRFY** answers `252 2.5.0` (RFC 5321 §3.5.3: cannot verify, but will try to deliver; the
//!   proxy knows no mailbox before AUTH), **EXPN** `502 5.5.1` (RFC 5321 §3.5.2 allows not
//!   implementing it), **HELP** `214`.
//! - **The mail transaction before AUTH**: `MAIL`, `RCPT`, `DATA`, `BDAT`, `BURL` get `530 5.7.0
//!   Authentication required` (`Must issue a STARTTLS command first` while TLS is required and
//!   off). `DATA`/`BDAT` after a refused `MAIL`/`RCPT` of the same transaction (pipelined, or held
//!   behind an AUTH that failed) get `554 5.5.1 No valid recipients`, as RFC 2920 §3.1 asks. A
//!   refused `BDAT` chunk is read and dropped (RFC 3030 §2), up to 1 MiB; a larger one, or a size
//!   that cannot be read, closes the connection (the data cannot be told from commands).
//! - **Login failures**: `BadCredentials` → `535 5.7.8 Authentication credentials invalid`;
//!   `Unavailable` → `454 4.7.0 <text>` (RFC 4954 §6: temporary, clients must not prompt again);
//!   `Reauthorize` and `UpstreamRejected` → `535 5.7.8 <text>`: a `454` would make clients retry
//!   for ever without showing anything, a `535` shows the text (the command to run).
//! - **Limits**: each 4xx/5xx reply the core sends counts as an error (login failures reported
//!   by the driver count separately, against `max_failed_logins`); each command line counts
//!   against `max_commands` (SASL response lines do not). Every close the core decides is
//!   announced with a `421 4.7.0` line.
//!
//! Memory: the core holds what it is fed; processing consumes it as it goes, and over-long lines
//! and refused chunks are dropped as they arrive. While a [`Login`] is pending the core reads
//! nothing, so the driver should not read from the client then (what it feeds becomes leftover).
//! After [`ServerEvent::StartTls`], `feed` drops its input until `tls_started`.

mod auth;
mod credentials;
mod extensions;
mod input;
#[cfg(test)]
mod tests;

use std::fmt;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::core::{ClientEvent, LoginRequest};

pub use extensions::common_extensions;
use extensions::{HeloArgument, helo_argument};
use input::{Input, Kind, Next};

/// Bounds on what a client may send before AUTH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, line ending included (at least 16 is used). 2048, not RFC 5321's
    /// 512: lenient with clients that send more.
    pub max_line: usize,
    /// Longest SASL response line and `AUTH` command line (RFC 4954 §4: 12288).
    pub max_auth_line: usize,
    /// Command lines before AUTH; one more gets `421` and the connection closes.
    pub max_commands: usize,
    /// 4xx/5xx replies before the connection is closed.
    pub max_errors: usize,
    /// Failed logins (reported with [`ServerCore::login_failed`]) before the connection is closed.
    pub max_failed_logins: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 2048,
            max_auth_line: 12288,
            max_commands: 100,
            max_errors: 10,
            max_failed_logins: 3,
        }
    }
}

/// The largest refused `BDAT` chunk read and dropped; a larger one closes the connection.
pub const MAX_SKIPPED_CHUNK: u64 = 1024 * 1024;

/// How a listener presents itself.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TLS is active from the start (implicit-TLS listener). After STARTTLS the driver calls
    /// [`ServerCore::tls_started`] instead.
    pub tls_active: bool,
    /// STARTTLS can be offered (a plain listener with a certificate).
    pub starttls: bool,
    /// Before TLS: no AUTH advertised, and AUTH and the mail transaction get `530 5.7.0 Must
    /// issue a STARTTLS command first`.
    pub require_tls: bool,
    /// For the greeting (`220 {name} ESMTP mailoauth ready`) and the EHLO/HELO replies.
    pub name: String,
    /// The upstream's EHLO keyword lines (without `250-`/`250 `), e.g. `SIZE 35882577`,
    /// `PIPELINING`. AUTH, `AUTH=` and STARTTLS lines are dropped, the rest is advertised
    /// verbatim (see [`common_extensions`] for several upstreams).
    pub extensions: Vec<String>,
    /// Accept AUTH after HELO (not only after EHLO): printers do that.
    pub helo_auth: bool,
    pub limits: Limits,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            tls_active: false,
            starttls: false,
            require_tls: false,
            name: "mailoauth".into(),
            extensions: Vec::new(),
            helo_auth: true,
            limits: Limits::default(),
        }
    }
}

/// What the core asks the driver to do (the shared [`ClientEvent`] with SMTP's [`Login`]).
pub type ServerEvent = ClientEvent<Login>;

/// A login to verify. Its `Debug` never shows the password.
pub struct Login {
    pub user: String,
    pub password: SecretString,
    /// The client's EHLO/HELO argument for the upstream's EHLO, when it is printable ASCII
    /// without spaces, at most 255 octets (checked again upstream).
    pub helo: Option<String>,
    pub mechanism: LoginMechanism,
}

impl LoginRequest for Login {
    fn user(&self) -> &str {
        &self.user
    }
    fn password(&self) -> &SecretString {
        &self.password
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &format_args!("[redacted]"))
            .field("helo", &self.helo)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// The SASL mechanism the client logged in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMechanism {
    Plain,
    Login,
}

pub use crate::core::LoginFailure;

/// Which greeting the client sent (forgotten at the STARTTLS boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Greeted {
    No,
    Helo,
    Ehlo,
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// `334 ` went out for AUTH PLAIN; the next line is the PLAIN message.
    AuthPlain,
    /// `334 VXNlcm5hbWU6` went out for AUTH LOGIN.
    AuthLoginUser,
    /// `334 UGFzc3dvcmQ6` went out; the user name waits here.
    AuthLoginPassword(Zeroizing<Vec<u8>>),
    /// A Login event is out.
    LoginPending,
    /// A StartTls event is out; input is dropped.
    AwaitingTls,
    /// The output ends with a `421`; the next `next_event` returns Close.
    Closing,
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Commands => "commands",
            State::AuthPlain => "auth-plain",
            State::AuthLoginUser => "auth-login-user",
            State::AuthLoginPassword(_) => "auth-login-password",
            State::LoginPending => "login-pending",
            State::AwaitingTls => "awaiting-tls",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

/// Longest text taken from a [`LoginFailure`] (a reply line stays within RFC 5321's 512 octets).
const MAX_TEXT: usize = 480;
/// Longest listener name used.
const MAX_NAME: usize = 255;

/// The SMTP server side of one connection, before AUTH.
pub struct ServerCore {
    options: ServerOptions,
    name: String,
    tls_active: bool,
    greeted: Greeted,
    /// The client's EHLO/HELO argument, when it may go upstream.
    helo: Option<String>,
    /// A MAIL or RCPT of the current transaction was refused: DATA/BDAT get `554`.
    transaction_refused: bool,
    state: State,
    input: Input,
    output: Vec<u8>,
    commands: usize,
    errors: usize,
    failed_logins: usize,
}

impl ServerCore {
    /// A core for a new connection; the greeting is in the output.
    pub fn new(options: ServerOptions) -> ServerCore {
        let max_line = options.limits.max_line.max(16);
        let max_auth_line = options.limits.max_auth_line.max(max_line);
        let name = sanitize(&options.name, MAX_NAME, "mailoauth");
        let mut core = ServerCore {
            tls_active: options.tls_active,
            input: Input::new(max_line, max_auth_line),
            options,
            name,
            greeted: Greeted::No,
            helo: None,
            transaction_refused: false,
            state: State::Commands,
            output: Vec::new(),
            commands: 0,
            errors: 0,
            failed_logins: 0,
        };
        core.push(&format!("220 {} ESMTP mailoauth ready", core.name));
        core
    }

    /// Bytes from the client, in any chunking. Dropped after STARTTLS (until `tls_started`)
    /// and once the core decided to close.
    pub fn feed(&mut self, input: &[u8]) {
        match self.state {
            State::AwaitingTls | State::Closing | State::Closed => {}
            _ => self.input.push(input),
        }
    }

    /// The bytes to write to the client (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Processes buffered input until an event, or until more input is needed (`None`). The
    /// replies produced on the way are in [`take_output`](Self::take_output).
    pub fn next_event(&mut self) -> Option<ServerEvent> {
        loop {
            let kind = match self.state {
                State::Closing => {
                    self.state = State::Closed;
                    return Some(ServerEvent::Close);
                }
                State::Closed | State::LoginPending | State::AwaitingTls => return None,
                State::Commands => Kind::Command,
                State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword(_) => {
                    Kind::AuthResponse
                }
            };
            let event = match self.input.next(kind) {
                Next::NeedMore => return None,
                Next::TooLong if kind == Kind::AuthResponse => {
                    self.state = State::Commands;
                    self.error("500 5.5.6 Authentication exchange line is too long");
                    None
                }
                Next::TooLong => {
                    self.error("500 5.5.6 Line too long");
                    None
                }
                Next::Endless => {
                    self.close("Line too long");
                    None
                }
                Next::Line { crlf } if kind == Kind::AuthResponse => self.on_auth_response(crlf),
                Next::Line { crlf } => self.on_command(crlf),
            };
            if event.is_some() {
                return event;
            }
        }
    }

    /// The TLS handshake after [`ServerEvent::StartTls`] succeeded: reading resumes, a new EHLO
    /// is required (RFC 3207 §4.2: the client's EHLO argument is forgotten), and EHLO no longer
    /// offers STARTTLS. Ignored at other times.
    pub fn tls_started(&mut self) {
        if let State::AwaitingTls = self.state {
            self.tls_active = true;
            self.greeted = Greeted::No;
            self.helo = None;
            self.transaction_refused = false;
            self.state = State::Commands;
        }
    }

    /// Answers the pending AUTH with the reply for `failure`, then resumes with whatever the
    /// client pipelined (answered here, never forwarded). Ignored without a pending login.
    pub fn login_failed(&mut self, failure: LoginFailure) {
        if !matches!(self.state, State::LoginPending) {
            return;
        }
        self.state = State::Commands;
        let line = match failure {
            LoginFailure::BadCredentials => {
                "535 5.7.8 Authentication credentials invalid".to_owned()
            }
            LoginFailure::Unavailable(text) => format!(
                "454 4.7.0 {}",
                sanitize(&text, MAX_TEXT, "Temporary authentication failure")
            ),
            LoginFailure::Reauthorize(text) => format!(
                "535 5.7.8 {}",
                sanitize(&text, MAX_TEXT, "Account needs re-authorization")
            ),
            LoginFailure::UpstreamRejected(text) => format!(
                "535 5.7.8 {}",
                sanitize(&text, MAX_TEXT, "Upstream rejected the login")
            ),
        };
        self.push(&line);
        self.failed_logins += 1;
        if self.failed_logins >= self.options.limits.max_failed_logins {
            self.close("Too many failed logins");
        }
    }

    /// After the upstream login succeeded: what the client sent after its AUTH, in order and
    /// untouched, for the upstream.
    pub fn into_leftover(self) -> Vec<u8> {
        self.input.leftover().to_vec()
    }

    pub fn is_tls_active(&self) -> bool {
        self.tls_active
    }

    /// A complete command line.
    fn on_command(&mut self, crlf: bool) -> Option<ServerEvent> {
        if !self.count_command() {
            return None;
        }
        if !crlf {
            self.error("500 5.5.2 Syntax error: lines must end with CRLF");
            return None;
        }
        let line = Zeroizing::new(self.input.line().to_vec());
        if line.contains(&0) {
            self.error("500 5.5.2 Syntax error");
            return None;
        }
        let (verb, args) = match line.iter().position(|&b| b == b' ') {
            Some(sp) => (&line[..sp], &line[sp + 1..]),
            None => (&line[..], &b""[..]),
        };
        match verb.to_ascii_uppercase().as_slice() {
            b"EHLO" => self.hello(args, Greeted::Ehlo),
            b"HELO" => self.hello(args, Greeted::Helo),
            b"AUTH" => return self.auth(args),
            b"STARTTLS" => return self.starttls(args),
            b"NOOP" => self.push("250 2.0.0 OK"),
            b"RSET" => {
                self.transaction_refused = false;
                self.push("250 2.0.0 OK");
            }
            b"QUIT" => {
                self.push("221 2.0.0 Bye");
                self.state = State::Closed;
                return Some(ServerEvent::Close);
            }
            b"HELP" => self.push("214 2.0.0 Log in with AUTH PLAIN or AUTH LOGIN, then send mail"),
            b"VRFY" if args.iter().all(|&b| b == b' ') => {
                self.error("501 5.5.4 Syntax: VRFY address");
            }
            b"VRFY" => self.push("252 2.5.0 Cannot VRFY user, but will accept mail and try"),
            b"EXPN" => self.error("502 5.5.1 EXPN is not supported"),
            b"MAIL" | b"RCPT" | b"BURL" => {
                self.transaction_refused = true;
                self.error(self.auth_required());
            }
            b"DATA" => self.error(self.data_refusal()),
            b"BDAT" => self.bdat(args),
            _ => self.error("500 5.5.1 Command unrecognized"),
        }
        None
    }

    fn hello(&mut self, args: &[u8], greeted: Greeted) {
        let verb = if greeted == Greeted::Ehlo {
            "EHLO"
        } else {
            "HELO"
        };
        let HeloArgument::Valid(helo) = helo_argument(args) else {
            return self.error(&format!("501 5.5.4 Syntax: {verb} hostname"));
        };
        self.greeted = greeted;
        self.helo = helo;
        self.transaction_refused = false;
        if greeted == Greeted::Helo {
            return self.push(&format!("250 {}", self.name));
        }
        let mut lines = vec![format!("{} Hello", self.name)];
        lines.extend(
            self.options
                .extensions
                .iter()
                .filter(|l| extensions::is_kept(l))
                .cloned(),
        );
        if !self.tls_required() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        if self.options.starttls && !self.tls_active {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.output
                .extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }

    fn starttls(&mut self, args: &[u8]) -> Option<ServerEvent> {
        if !args.iter().all(|&b| b == b' ') {
            self.error("501 5.5.4 Syntax: STARTTLS");
        } else if self.tls_active {
            self.error("503 5.5.1 TLS is active already");
        } else if !self.options.starttls {
            self.error("502 5.5.1 STARTTLS is not available");
        } else {
            self.push("220 2.0.0 Ready to start TLS");
            self.input.discard_all();
            self.state = State::AwaitingTls;
            return Some(ServerEvent::StartTls);
        }
        None
    }

    /// `BDAT size [LAST]` before AUTH: refused, and its chunk dropped.
    fn bdat(&mut self, args: &[u8]) {
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let size = words
            .next()
            .filter(|w| w.len() <= 19 && w.iter().all(u8::is_ascii_digit))
            .and_then(|w| std::str::from_utf8(w).ok()?.parse::<u64>().ok());
        let last = words.next();
        let syntax_ok =
            last.is_none_or(|w| w.eq_ignore_ascii_case(b"LAST")) && words.next().is_none();
        match size {
            Some(size) if syntax_ok => {
                self.error(self.data_refusal());
                if size > MAX_SKIPPED_CHUNK {
                    self.close("Chunk too large to skip before authentication");
                } else {
                    self.input.skip_octets(size);
                }
            }
            _ => {
                self.push("501 5.5.4 Syntax: BDAT size [LAST]");
                self.close("Cannot find the end of the chunk");
            }
        }
    }

    /// The reply to DATA/BDAT before AUTH.
    fn data_refusal(&self) -> &'static str {
        if self.transaction_refused {
            "554 5.5.1 No valid recipients"
        } else {
            self.auth_required()
        }
    }

    fn auth_required(&self) -> &'static str {
        if self.tls_required() {
            "530 5.7.0 Must issue a STARTTLS command first"
        } else {
            "530 5.7.0 Authentication required"
        }
    }

    fn tls_required(&self) -> bool {
        self.options.require_tls && !self.tls_active
    }

    /// Counts a command; false (and closing) when that is one too many.
    fn count_command(&mut self) -> bool {
        self.commands += 1;
        if self.commands > self.options.limits.max_commands {
            self.close("Too many commands");
            return false;
        }
        true
    }

    /// Sends a 4xx/5xx reply, and closes when that was the last one allowed.
    fn error(&mut self, line: &str) {
        self.push(line);
        self.errors += 1;
        if self.errors >= self.options.limits.max_errors && !matches!(self.state, State::Closing) {
            self.close("Too many errors");
        }
    }

    fn close(&mut self, reason: &str) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        self.push(&format!("421 4.7.0 {reason}, closing connection"));
        self.state = State::Closing;
    }

    fn push(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }
}

/// Shows the state, never the buffered input (it may hold a password).
impl fmt::Debug for ServerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCore")
            .field("state", &self.state.name())
            .field("tls_active", &self.tls_active)
            .field("greeted", &self.greeted)
            .field("commands", &self.commands)
            .field("errors", &self.errors)
            .field("failed_logins", &self.failed_logins)
            .field("buffered", &self.input.leftover().len())
            .finish_non_exhaustive()
    }
}

/// `text` as one line of reply text: controls (CR, LF, NUL…) become spaces, at most `max`
/// octets, and never empty (`fallback`).
fn sanitize(text: &str, max: usize, fallback: &str) -> String {
    let mut line = String::new();
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if line.len() + c.len_utf8() > max {
            break;
        }
        line.push(c);
    }
    let trimmed = line.trim();
    if trimmed.is_empty() {
        fallback.to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl crate::core::ClientCore for ServerCore {
    type Login = Login;
    fn feed(&mut self, input: &[u8]) {
        ServerCore::feed(self, input)
    }
    fn take_output(&mut self) -> Vec<u8> {
        ServerCore::take_output(self)
    }
    fn next_event(&mut self) -> Option<ServerEvent> {
        ServerCore::next_event(self)
    }
    fn tls_started(&mut self) {
        ServerCore::tls_started(self)
    }
    fn login_failed(&mut self, failure: LoginFailure) {
        ServerCore::login_failed(self, failure)
    }
    fn into_leftover(self) -> Vec<u8> {
        ServerCore::into_leftover(self)
    }
}
