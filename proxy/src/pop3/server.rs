//! The POP3 server core: what a client sees before login, as a sans-IO state machine
//! (protocols.md §4; RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS, RFC 3206 codes).
//!
//! The driver feeds the client's bytes in ([`ServerCore::feed`], any chunking), asks for events
//! ([`ServerCore::next_event`]) and writes [`ServerCore::take_output`] to the client. The core
//! greets at once (`+OK {name} ready`, never with an APOP `<timestamp>`), answers CAPA, USER,
//! STLS, QUIT and the bare-`AUTH` mechanism list itself, refuses every other command before
//! login, and turns `USER`+`PASS` or `AUTH PLAIN` into a [`Login`] event. Then it stops reading
//! until the driver either reports the verdict ([`ServerCore::login_failed`]: the core answers
//! the `-ERR` and goes on with the pipelined commands) or takes the bytes the client pipelined
//! after its login ([`ServerCore::into_leftover`]) to send them upstream, whose `+OK` answers
//! the login.
//!
//! Decisions where the RFCs leave a choice:
//! - **Line length**: RFC 2449 §4 allows 255 octets per command line (CRLF included); the core
//!   accepts [`Limits::max_line`] (1024 by default) for lenient clients, and
//!   [`Limits::max_auth_line`] for a SASL response line and for an `AUTH` command line (RFC 5034
//!   wants long initial responses sent after `+ `, but a client that inlines one loses
//!   nothing here). A longer line gets `-ERR Line too long` and the connection closes.
//! - **Bare LF** ends the line (nobody hangs waiting for a CR), and the command is refused with
//!   `-ERR Lines must end with CRLF`, as the IMAP core does: RFC 1939 §3 wants CRLF, and a PASS
//!   whose line ending is unclear could carry a stray CR in its password.
//! - **`PASS`**: everything after `PASS ` up to CRLF is the password, spaces included, at the
//!   ends too (RFC 1939 §7 allows it, since PASS has one argument); `USER` takes the rest of its
//!   line likewise. `USER` always answers `+OK` (nothing reveals whether the user exists); the
//!   user is forgotten after each PASS, failed or not, and at STLS.
//! - **TLS required and not active** (`require_tls`): CAPA lists neither `USER` nor `SASL`, a
//!   bare `AUTH` lists no mechanism, and `USER`, `PASS`, `AUTH` get `-ERR [SYS/PERM] Use STLS
//!   first` (`… Login requires TLS` without STLS). Refusing USER stops a client before it sends
//!   its password in clear (RFC 2595 §4 says reply -ERR; no RFC 3206 code fits exactly, and
//!   `[SYS/PERM]` is shown to the user rather than answered with a password prompt, which
//!   `[AUTH]` would cause).
//! - **`AUTH PLAIN`** with an initial response, or without one (`+ ` with the trailing space,
//!   then the response line); `=` is the empty response and fails, `*` cancels; strict base64
//!   (RFC 5034 §4). The authzid must be empty or the user. Every other mechanism: `-ERR`.
//! - **Bare `AUTH`**: `+OK`, `PLAIN`, `.` (the RFC 1734-era listing some old clients send).
//! - **Errors**: each `-ERR` the core decides counts against `max_errors`; each command against
//!   `max_commands`; failed logins (reported by the driver) against `max_failed_logins`. When a
//!   limit is reached the answer that reached it is the last line and the connection closes
//!   (POP3 has no untagged goodbye: a second line would be read as the next answer).
//!
//! Memory: the core holds what it is fed and consumes it line by line; a line over its limit
//! closes the connection. While a [`Login`] is pending the core reads nothing, so the driver
//! should not read from the client then (what it feeds becomes leftover). After
//! [`ServerEvent::StartTls`], `feed` drops its input until `tls_started`.

mod capabilities;
mod credentials;
mod input;
#[cfg(test)]
mod tests;

use std::fmt;

use secrecy::SecretString;

use crate::core::{ClientEvent, LoginRequest};

pub use capabilities::common_capabilities;
use credentials::{Credentials, Refusal};
use input::{Input, Line};

/// Bounds on what a client may send before login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, line ending included. RFC 2449 §4 says 255; the default is 1024
    /// for lenient clients (long user names, long passwords on PASS). At least 8 is used.
    pub max_line: usize,
    /// Longest SASL response line, and `AUTH` command line (an inlined initial response).
    pub max_auth_line: usize,
    /// Commands before login; one more gets `-ERR` and the connection closes.
    pub max_commands: usize,
    /// `-ERR` answers before the connection is closed.
    pub max_errors: usize,
    /// Failed logins (reported with [`ServerCore::login_failed`]) before the connection closes.
    pub max_failed_logins: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 1024,
            max_auth_line: 12288,
            max_commands: 100,
            max_errors: 10,
            max_failed_logins: 3,
        }
    }
}

/// How a listener presents itself.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TLS is active from the start (implicit-TLS listener). After STLS the driver calls
    /// [`ServerCore::tls_started`] instead.
    pub tls_active: bool,
    /// STLS can be offered (a plain listener with a certificate).
    pub starttls: bool,
    /// Before TLS: no `USER`/`SASL` in CAPA, and USER/PASS/AUTH get `-ERR [SYS/PERM]`.
    pub require_tls: bool,
    /// For the greeting `+OK {name} ready` (made one line, without `<` `>`: no APOP timestamp).
    pub name: String,
    /// The upstream's CAPA lines; only the allow-listed ones are advertised (see
    /// [`common_capabilities`]).
    pub capabilities: Vec<String>,
    pub limits: Limits,
}

/// What the core asks the driver to do (the shared [`ClientEvent`] with POP3's [`Login`]).
pub type ServerEvent = ClientEvent<Login>;

/// A login to verify. Its `Debug` never shows the password.
pub struct Login {
    pub user: String,
    pub password: SecretString,
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
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// The commands the client logged in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMechanism {
    UserPass,
    AuthPlain,
}

pub use crate::core::LoginFailure;

/// The POP3 server side of one connection, before login.
pub struct ServerCore {
    options: ServerOptions,
    /// The allow-listed upstream capabilities, as advertised.
    kept_capabilities: Vec<String>,
    tls_active: bool,
    state: State,
    /// The name from the last `USER`, until a PASS or STLS.
    user: Option<String>,
    input: Input,
    output: Vec<u8>,
    commands: usize,
    errors: usize,
    failed_logins: usize,
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// `+ ` went out for AUTH PLAIN; the next line is the client's response.
    AuthResponse,
    /// A Login event is out.
    LoginPending,
    /// A StartTls event is out; input is dropped.
    AwaitingTls,
    /// The last answer is out; the next `next_event` returns Close.
    Closing,
    Closed,
}

/// Longest text taken from a [`LoginFailure`] or the listener's name.
const MAX_TEXT: usize = 400;

impl ServerCore {
    /// A core for a new connection; the greeting is in the output.
    pub fn new(options: ServerOptions) -> ServerCore {
        let kept_capabilities = common_capabilities(std::slice::from_ref(&options.capabilities));
        let mut core = ServerCore {
            tls_active: options.tls_active,
            kept_capabilities,
            options,
            state: State::Commands,
            user: None,
            input: Input::new(),
            output: Vec::new(),
            commands: 0,
            errors: 0,
            failed_logins: 0,
        };
        let name = sanitize(&core.options.name.replace(['<', '>'], " "), "mailoauth");
        core.push(&format!("+OK {name} ready"));
        core
    }

    /// Bytes from the client, in any chunking. Dropped after STLS (until `tls_started`) and
    /// once the core decided to close.
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
    /// answers produced on the way are in [`take_output`](Self::take_output).
    pub fn next_event(&mut self) -> Option<ServerEvent> {
        loop {
            match self.state {
                State::Closing => {
                    self.state = State::Closed;
                    return Some(ServerEvent::Close);
                }
                State::Closed | State::LoginPending | State::AwaitingTls => return None,
                State::Commands | State::AuthResponse => {}
            }
            let auth_response = matches!(self.state, State::AuthResponse);
            let limits = &self.options.limits;
            let (max_line, max_auth_line) = (limits.max_line.max(8), limits.max_auth_line);
            let limit = |line: &[u8]| {
                let auth = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ");
                if auth_response || auth {
                    max_line.max(max_auth_line)
                } else {
                    max_line
                }
            };
            let event = match self.input.next_line(limit) {
                Line::NeedMore => return None,
                Line::TooLong => {
                    self.push("-ERR Line too long");
                    self.state = State::Closing;
                    None
                }
                Line::Complete { crlf } if auth_response => {
                    self.state = State::Commands;
                    self.on_auth_response(crlf)
                }
                Line::Complete { crlf } => self.on_command(crlf),
            };
            if event.is_some() {
                return event;
            }
        }
    }

    /// The TLS handshake after [`ServerEvent::StartTls`] succeeded: reading resumes, and CAPA no
    /// longer offers STLS. Ignored at other times.
    pub fn tls_started(&mut self) {
        if let State::AwaitingTls = self.state {
            self.tls_active = true;
            self.state = State::Commands;
        }
    }

    /// Answers the pending login with the `-ERR` for `failure` (RFC 3206 codes), then resumes
    /// with whatever the client pipelined (answered here, never forwarded). Ignored without a
    /// pending login.
    pub fn login_failed(&mut self, failure: LoginFailure) {
        if !matches!(self.state, State::LoginPending) {
            return;
        }
        self.state = State::Commands;
        let line = match failure {
            LoginFailure::BadCredentials => "-ERR [AUTH] Authentication failed".to_owned(),
            LoginFailure::Unavailable(text) => format!(
                "-ERR [SYS/TEMP] {}",
                sanitize(&text, "Upstream temporarily unavailable")
            ),
            LoginFailure::Reauthorize(text) => format!(
                "-ERR [SYS/PERM] {}",
                sanitize(&text, "Account needs re-authorization")
            ),
            LoginFailure::UpstreamRejected(text) => format!(
                "-ERR [AUTH] {}",
                sanitize(&text, "Upstream rejected the login")
            ),
        };
        self.push(&line);
        self.failed_logins += 1;
        if self.failed_logins >= self.options.limits.max_failed_logins {
            self.state = State::Closing;
        }
    }

    /// After the upstream login succeeded: what the client sent after its login command, in
    /// order and untouched, for the upstream. (The upstream's `+OK` answers the login; the core
    /// never writes one.)
    pub fn into_leftover(self) -> Vec<u8> {
        self.input.leftover().to_vec()
    }

    pub fn is_tls_active(&self) -> bool {
        self.tls_active
    }

    /// A complete command line.
    fn on_command(&mut self, crlf: bool) -> Option<ServerEvent> {
        self.commands += 1;
        if self.commands > self.options.limits.max_commands {
            self.push("-ERR Too many commands before login");
            self.state = State::Closing;
            return None;
        }
        if !crlf {
            self.error("Lines must end with CRLF");
            return None;
        }
        // `KEYWORD` or `KEYWORD SP arguments`: the arguments are the rest of the line, verbatim.
        let line = self.input.line();
        let space = line.iter().position(|&b| b == b' ');
        let verb = Verb::of(&line[..space.unwrap_or(line.len())]);
        let args = space.map(|at| at + 1);
        let login_disabled = self.login_disabled();
        match (verb, args) {
            (Verb::Capa, None) => self.capa(),
            (Verb::Quit, None) => {
                self.push("+OK Bye");
                self.state = State::Closing;
            }
            (Verb::Stls, None) => return self.stls(),
            (Verb::User | Verb::Pass | Verb::Auth, Some(_)) if login_disabled => {
                self.error(self.privacy_required())
            }
            (Verb::User, Some(at)) => match credentials::user(&self.input.line()[at..]) {
                Ok(user) => {
                    self.user = Some(user);
                    self.push("+OK Send PASS");
                }
                Err(refusal) => self.error(refusal.text()),
            },
            (Verb::Pass, Some(at)) => match self.user.take() {
                Some(user) => {
                    let credentials =
                        credentials::from_pass(user.as_bytes(), &self.input.line()[at..]);
                    return self.login(credentials, LoginMechanism::UserPass);
                }
                None => self.error("USER first"),
            },
            (Verb::Auth, None) => self.mechanism_list(),
            (Verb::Auth, Some(at)) => return self.auth(at),
            (Verb::Apop, _) => self.error("APOP is not supported"),
            (Verb::NeedsLogin, _) => self.error("Not authenticated: log in first"),
            (Verb::Capa | Verb::Quit | Verb::Stls, Some(_)) => self.error("No arguments allowed"),
            (Verb::User | Verb::Pass, None) => self.error("Missing argument"),
            (Verb::Unknown, _) => self.error("Unknown command"),
        }
        None
    }

    fn capa(&mut self) {
        let mut lines = vec!["+OK Capability list follows"];
        if !self.login_disabled() {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        lines.extend(["RESP-CODES", "AUTH-RESP-CODE"]);
        if self.options.starttls && !self.tls_active {
            lines.push("STLS");
        }
        let kept = std::mem::take(&mut self.kept_capabilities);
        lines.extend(kept.iter().map(String::as_str));
        lines.push(".");
        for line in lines {
            self.push(line);
        }
        self.kept_capabilities = kept;
    }

    fn mechanism_list(&mut self) {
        self.push("+OK");
        if !self.login_disabled() {
            self.push("PLAIN");
        }
        self.push(".");
    }

    fn stls(&mut self) -> Option<ServerEvent> {
        if self.tls_active {
            self.error("TLS is active already");
        } else if !self.options.starttls {
            self.error("STLS is not available");
        } else {
            self.push("+OK Begin TLS negotiation");
            self.input.discard_all();
            self.user = None;
            self.state = State::AwaitingTls;
            return Some(ServerEvent::StartTls);
        }
        None
    }

    /// `AUTH mechanism [initial-response]`, its arguments at `at` in the line.
    fn auth(&mut self, at: usize) -> Option<ServerEvent> {
        let args = &self.input.line()[at..];
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(mechanism), response, None) = (words.next(), words.next(), words.next()) else {
            self.error("Syntax: AUTH mechanism [initial-response]");
            return None;
        };
        if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
            self.error("Unsupported authentication mechanism");
            return None;
        }
        match response.map(credentials::from_base64_plain) {
            Some(credentials) => self.login(credentials, LoginMechanism::AuthPlain),
            None => {
                self.push("+ ");
                self.state = State::AuthResponse;
                None
            }
        }
    }

    /// The client's response line after `+ ` for AUTH PLAIN.
    fn on_auth_response(&mut self, crlf: bool) -> Option<ServerEvent> {
        let line = self.input.line();
        if !crlf {
            self.error("Lines must end with CRLF");
            None
        } else if line == b"*" {
            self.error("Authentication cancelled");
            None
        } else {
            let credentials = credentials::from_base64_plain(line);
            self.login(credentials, LoginMechanism::AuthPlain)
        }
    }

    fn login(
        &mut self,
        credentials: Result<Credentials, Refusal>,
        mechanism: LoginMechanism,
    ) -> Option<ServerEvent> {
        match credentials {
            Ok(Credentials { user, password }) => {
                self.user = None;
                self.state = State::LoginPending;
                Some(ServerEvent::Login(Login {
                    user,
                    password,
                    mechanism,
                }))
            }
            Err(refusal) => {
                self.user = None;
                self.error(refusal.text());
                None
            }
        }
    }

    fn login_disabled(&self) -> bool {
        self.options.require_tls && !self.tls_active
    }

    fn privacy_required(&self) -> &'static str {
        if self.options.starttls {
            "[SYS/PERM] Use STLS first"
        } else {
            "[SYS/PERM] Login requires TLS"
        }
    }

    /// Sends `-ERR text`, and closes when that was the last error allowed.
    fn error(&mut self, text: &str) {
        self.push(&format!("-ERR {text}"));
        self.errors += 1;
        if self.errors >= self.options.limits.max_errors {
            self.state = State::Closing;
        }
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
            .field("state", &self.state)
            .field("tls_active", &self.tls_active)
            .field("user", &self.user)
            .field("commands", &self.commands)
            .field("errors", &self.errors)
            .field("failed_logins", &self.failed_logins)
            .field("buffered", &self.input.leftover().len())
            .finish_non_exhaustive()
    }
}

/// A command keyword, as far as the core cares before login (case-insensitive, RFC 1939 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Capa,
    Quit,
    Stls,
    User,
    Pass,
    Auth,
    Apop,
    /// A TRANSACTION-state command (RFC 1939, RFC 2449, RFC 6856): not before login.
    NeedsLogin,
    Unknown,
}

impl Verb {
    fn of(keyword: &[u8]) -> Verb {
        const VERBS: [(&[u8], Verb); 18] = [
            (b"CAPA", Verb::Capa),
            (b"QUIT", Verb::Quit),
            (b"STLS", Verb::Stls),
            (b"USER", Verb::User),
            (b"PASS", Verb::Pass),
            (b"AUTH", Verb::Auth),
            (b"APOP", Verb::Apop),
            (b"STAT", Verb::NeedsLogin),
            (b"LIST", Verb::NeedsLogin),
            (b"RETR", Verb::NeedsLogin),
            (b"DELE", Verb::NeedsLogin),
            (b"NOOP", Verb::NeedsLogin),
            (b"RSET", Verb::NeedsLogin),
            (b"TOP", Verb::NeedsLogin),
            (b"UIDL", Verb::NeedsLogin),
            (b"LAST", Verb::NeedsLogin),
            (b"UTF8", Verb::NeedsLogin),
            (b"LANG", Verb::NeedsLogin),
        ];
        VERBS
            .iter()
            .find(|(name, _)| keyword.eq_ignore_ascii_case(name))
            .map_or(Verb::Unknown, |&(_, verb)| verb)
    }
}

/// `text` as one line: controls (CR, LF, NUL…) become spaces, at most [`MAX_TEXT`] octets, and
/// never empty (`fallback`).
fn sanitize(text: &str, fallback: &str) -> String {
    let mut line = String::new();
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if line.len() + c.len_utf8() > MAX_TEXT {
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
