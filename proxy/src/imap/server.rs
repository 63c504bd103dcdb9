//! The IMAP server core: what a client sees before login, as a sans-IO state machine.
//!
//! The driver feeds the client's bytes in ([`ServerCore::feed`], any chunking), asks for events
//! ([`ServerCore::next_event`]) and writes [`ServerCore::take_output`] to the client. The core
//! answers CAPABILITY, NOOP, ID, LOGOUT and STARTTLS itself, refuses every other command before
//! login, and turns LOGIN or AUTHENTICATE PLAIN into a [`Login`] event. Then it stops reading
//! until the driver either reports the upstream's verdict ([`ServerCore::login_failed`]: the core
//! answers the NO and goes on with the pipelined commands) or takes the bytes the client
//! pipelined after its login ([`ServerCore::into_leftover`]) to send them upstream.
//!
//! Parsing is imap-codec's (`CommandCodec`, `AuthenticateDataCodec`, and its `Fragmentizer` for
//! framing, see `input`); the decisions are here. Decoded commands hold the password in
//! imap-codec's `Secret`, whose `Debug` shows it in debug builds: they are never printed, only
//! turned into the owned [`Request`] right away.
//!
//! Decisions where the RFCs leave a choice:
//! - **Bare LF** (a line ending in LF without CR): the line ends there (so nobody hangs waiting
//!   for a CR), and the command is refused with `BAD Lines must end with CRLF`. imap-codec's
//!   grammar wants CRLF, RFC 9051 §2.2 too, and clients that log in all send it.
//! - **Non-synchronizing literal over the LITERAL- limit** (`{5000+}`): tagged
//!   `BAD [TOOBIG]`, `* BYE` and close (RFC 7888 §5 allows consuming the octets or closing;
//!   consuming up to 4 GiB to throw it away helps nobody).
//! - **Synchronizing literal over `max_literal`**: tagged `NO [TOOBIG]` instead of `+`; the
//!   client then sends no data (RFC 9051 §7.5) and the core reads the next command.
//! - A literal in a command that cannot be accepted (a state or syntax error before it, a LOGIN
//!   while LOGINDISABLED): no `+` for a synchronizing one (the refusal goes out at once); the
//!   octets of a non-synchronizing one are read and dropped, and the refusal answers the end of
//!   the command. Literals are accepted in LOGIN and ID only.
//! - **BAD** for syntax errors, commands that need a login, STARTTLS when not available or
//!   already active, `*` cancel and bad base64 (RFC 9051 §6.2.2); **NO** for what is well formed
//!   but refused: unsupported SASL mechanisms, LOGIN/AUTHENTICATE before TLS when TLS is required
//!   (`[PRIVACYREQUIRED]`), too large literals (`[TOOBIG]`), malformed or unusable credentials
//!   (empty, not UTF-8, authzid not the user: RFC 4616 says fail the authentication).
//! - Limits: each BAD/NO the core sends counts as an error (login failures reported by the
//!   driver count separately, against `max_failed_logins`); each command counts against
//!   `max_commands`. Every close the core decides is preceded by a `* BYE` with the reason.
//!
//! Memory: the core holds what it is fed. Processing consumes it as it goes: a line longer than
//! `max_line`, or a command longer than `max_line + 2 × max_literal`, closes the connection, and
//! an announced literal is only counted, never allocated. While a [`Login`] is pending the core
//! reads nothing, so the driver should not read from the client then (what it feeds becomes
//! leftover). After [`ServerEvent::StartTls`], `feed` drops its input until `tls_started`.

mod credentials;
mod input;
mod request;
#[cfg(test)]
mod tests;

use std::fmt;

use imap_codec::AuthenticateDataCodec;
use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::LiteralAnnouncement;
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::core::LiteralMode;
use secrecy::SecretString;

use crate::core::{ClientEvent, LoginRequest};

use credentials::{Credentials, Refusal};
use input::{Input, Next};
use request::{LiteralIn, Request};

/// Bounds on what a client may send before login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, line ending included.
    pub max_line: usize,
    /// Largest literal (LOGIN's arguments); non-synchronizing literals are also capped at
    /// 4096, the LITERAL- limit.
    pub max_literal: u32,
    /// Commands before login; one more gets `* BYE` and the connection closes.
    pub max_commands: usize,
    /// BAD/NO answers before the connection is closed.
    pub max_errors: usize,
    /// Failed logins (reported with [`ServerCore::login_failed`]) before the connection is closed.
    pub max_failed_logins: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 8 * 1024,
            max_literal: LITERAL_MINUS_MAX,
            max_commands: 100,
            max_errors: 10,
            max_failed_logins: 3,
        }
    }
}

/// The largest non-synchronizing literal a LITERAL- server accepts (RFC 7888 §5).
const LITERAL_MINUS_MAX: u32 = 4096;

/// How a listener presents itself.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TLS is active from the start (implicit-TLS listener). After STARTTLS the driver calls
    /// [`ServerCore::tls_started`] instead.
    pub tls_active: bool,
    /// STARTTLS can be offered (a plain listener with a certificate).
    pub starttls: bool,
    /// Before TLS: advertise LOGINDISABLED, not AUTH=PLAIN, and refuse LOGIN/AUTHENTICATE with
    /// `NO [PRIVACYREQUIRED]`.
    pub require_tls: bool,
    pub limits: Limits,
    /// For the greeting: `* OK [CAPABILITY …] {name} ready`.
    pub name: String,
}

/// What the core asks the driver to do (the shared [`ClientEvent`] with IMAP's [`Login`]).
pub type ServerEvent = ClientEvent<Login>;

/// A login to verify. Its `Debug` never shows the password.
pub struct Login {
    /// The client's tag, for the upstream AUTHENTICATE (so its tagged OK fits the client).
    pub tag: String,
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
            .field("tag", &self.tag)
            .field("user", &self.user)
            .field("password", &format_args!("[redacted]"))
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// The command the client logged in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMechanism {
    Login,
    AuthenticatePlain,
}

pub use crate::core::LoginFailure;

/// The IMAP server side of one connection, before login.
pub struct ServerCore {
    options: ServerOptions,
    tls_active: bool,
    state: State,
    input: Input,
    output: Vec<u8>,
    /// The answer for the command being read, already known to be refused, that carries
    /// non-synchronizing literals: their octets are read first, then this goes out.
    refusal: Option<String>,
    commands: usize,
    errors: usize,
    failed_logins: usize,
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// `+ ` went out for AUTHENTICATE PLAIN; the next line is the client's response.
    AuthResponse {
        tag: String,
    },
    /// A Login event is out.
    LoginPending {
        tag: String,
    },
    /// A StartTls event is out; input is dropped.
    AwaitingTls,
    /// The output ends with a `* BYE`; the next `next_event` returns Close.
    Closing,
    Closed,
}

const ID_RESPONSE: &str = concat!(
    "* ID (\"name\" \"mailoauth\" \"version\" \"",
    env!("CARGO_PKG_VERSION"),
    "\")"
);

/// Longest text taken from a [`LoginFailure`] or the listener's name.
const MAX_TEXT: usize = 1000;

impl ServerCore {
    /// A core for a new connection; the greeting is in the output.
    pub fn new(options: ServerOptions) -> ServerCore {
        let limits = &options.limits;
        let max_message = limits
            .max_line
            .saturating_add(2usize.saturating_mul(limits.max_literal as usize));
        let mut core = ServerCore {
            tls_active: options.tls_active,
            input: Input::new(limits.max_line, max_message),
            options,
            state: State::Commands,
            output: Vec::new(),
            refusal: None,
            commands: 0,
            errors: 0,
            failed_logins: 0,
        };
        let name = sanitize(&core.options.name, "mailoauth");
        core.push(&format!(
            "* OK [CAPABILITY {}] {name} ready",
            core.capabilities()
        ));
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
    /// answers produced on the way are in [`take_output`](Self::take_output).
    pub fn next_event(&mut self) -> Option<ServerEvent> {
        loop {
            match self.state {
                State::Closing => {
                    self.state = State::Closed;
                    return Some(ServerEvent::Close);
                }
                State::Closed | State::LoginPending { .. } | State::AwaitingTls => return None,
                State::Commands | State::AuthResponse { .. } => {}
            }
            let event = match self.input.next() {
                Next::NeedMore => return None,
                Next::TooLong => {
                    self.push("* BAD Command line too long");
                    self.close("Too much input");
                    None
                }
                Next::Literal => None,
                Next::Line { announcement, crlf } => {
                    if let State::AuthResponse { tag } = &mut self.state {
                        let tag = std::mem::take(tag);
                        self.state = State::Commands;
                        self.on_auth_response(tag, crlf)
                    } else if let Some(literal) = announcement {
                        self.on_literal(literal, crlf);
                        None
                    } else {
                        self.on_command(crlf)
                    }
                }
            };
            if event.is_some() {
                return event;
            }
        }
    }

    /// The TLS handshake after [`ServerEvent::StartTls`] succeeded: reading resumes, and the
    /// capabilities no longer offer STARTTLS or say LOGINDISABLED. Ignored at other times.
    pub fn tls_started(&mut self) {
        if let State::AwaitingTls = self.state {
            self.tls_active = true;
            self.state = State::Commands;
        }
    }

    /// Answers the pending login with the tagged NO for `failure`, then resumes with whatever
    /// the client pipelined (answered here, never forwarded). Ignored without a pending login.
    pub fn login_failed(&mut self, failure: LoginFailure) {
        let State::LoginPending { tag } = &mut self.state else {
            return;
        };
        let tag = std::mem::take(tag);
        self.state = State::Commands;
        let line = match failure {
            LoginFailure::BadCredentials => {
                format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
            }
            LoginFailure::Unavailable(text) => format!(
                "{tag} NO [UNAVAILABLE] {}",
                sanitize(&text, "Upstream temporarily unavailable")
            ),
            LoginFailure::Reauthorize(text) => format!(
                "{tag} NO [AUTHORIZATIONFAILED] {}",
                sanitize(&text, "Account needs re-authorization")
            ),
            LoginFailure::UpstreamRejected(text) => format!(
                "{tag} NO [AUTHENTICATIONFAILED] {}",
                sanitize(&text, "Upstream rejected the login")
            ),
        };
        self.push(&line);
        self.failed_logins += 1;
        if self.failed_logins >= self.options.limits.max_failed_logins {
            self.close("Too many failed logins");
        }
    }

    /// After the upstream login succeeded: what the client sent after its login command, in
    /// order and untouched, for the upstream. (The upstream's tagged OK answers the login; the
    /// core never writes one.)
    pub fn into_leftover(self) -> Vec<u8> {
        self.input.leftover().to_vec()
    }

    pub fn is_tls_active(&self) -> bool {
        self.tls_active
    }

    /// A complete command.
    fn on_command(&mut self, crlf: bool) -> Option<ServerEvent> {
        let refusal = self.refusal.take();
        if !self.count_command() {
            return None;
        }
        let tag = self.input.tag();
        let tag = tag.as_deref().unwrap_or("*");
        if let Some(reply) = refusal {
            self.error(reply);
            return None;
        }
        if !crlf {
            self.error(format!("{tag} BAD Lines must end with CRLF"));
            return None;
        }
        match request::decode(self.input.message()) {
            Some((tag, request)) => self.execute(tag, request),
            None => {
                self.error(format!("{tag} BAD Syntax error"));
                None
            }
        }
    }

    /// A line that announces a literal: `+`, read it silently, or refuse.
    fn on_literal(&mut self, literal: LiteralAnnouncement, crlf: bool) {
        let tag = self.input.tag();
        let tag = tag.as_deref().unwrap_or("*");
        let refusal = match self.refusal.take() {
            Some(refusal) => Some(refusal),
            None => self.literal_refusal(tag, crlf),
        };
        match literal.mode {
            LiteralMode::NonSync if literal.length > self.nonsync_max() => {
                self.push(&format!(
                    "{tag} BAD [TOOBIG] Non-synchronizing literal too large"
                ));
                self.close("Literal too large");
            }
            // The octets are on their way: read them, answer at the end of the command.
            LiteralMode::NonSync => self.refusal = refusal,
            LiteralMode::Sync => {
                let refusal = refusal.or_else(|| {
                    (literal.length > self.options.limits.max_literal)
                        .then(|| format!("{tag} NO [TOOBIG] Literal too large"))
                });
                match refusal {
                    Some(reply) => {
                        self.input.skip_message();
                        if self.count_command() {
                            self.error(reply);
                        }
                    }
                    None => self.push("+ Ready for literal data"),
                }
            }
        }
    }

    /// Why the command carrying this literal will be refused, if it will.
    fn literal_refusal(&self, tag: &str, crlf: bool) -> Option<String> {
        if !crlf {
            return Some(format!("{tag} BAD Lines must end with CRLF"));
        }
        match request::literal_in(self.input.message()) {
            LiteralIn::Login => self.login_disabled().then(|| self.privacy_required(tag)),
            LiteralIn::Id => None,
            LiteralIn::OtherCommand => Some(needs_login(tag)),
            LiteralIn::Garbage => Some(format!("{tag} BAD Syntax error")),
        }
    }

    /// The client's response line after `+ ` for AUTHENTICATE PLAIN.
    fn on_auth_response(&mut self, tag: String, crlf: bool) -> Option<ServerEvent> {
        let outcome = if crlf {
            match AuthenticateDataCodec::new().decode(self.input.message()) {
                Ok(([], AuthenticateData::Continue(data))) => {
                    Ok(credentials::from_plain(data.declassify()))
                }
                Ok(([], AuthenticateData::Cancel)) => {
                    Err(format!("{tag} BAD Authentication cancelled"))
                }
                _ => Err(format!("{tag} BAD Invalid base64")),
            }
        } else {
            Err(format!("{tag} BAD Lines must end with CRLF"))
        };
        // A response line carries no literal, whatever its end looks like.
        self.input.skip_message();
        match outcome {
            Ok(credentials) => self.login(tag, credentials, LoginMechanism::AuthenticatePlain),
            Err(reply) => {
                self.error(reply);
                None
            }
        }
    }

    fn execute(&mut self, tag: String, request: Request) -> Option<ServerEvent> {
        match request {
            Request::Capability => {
                self.push(&format!("* CAPABILITY {}", self.capabilities()));
                self.push(&format!("{tag} OK CAPABILITY completed"));
            }
            Request::Noop => self.push(&format!("{tag} OK NOOP completed")),
            Request::Id => {
                self.push(ID_RESPONSE);
                self.push(&format!("{tag} OK ID completed"));
            }
            Request::Logout => {
                self.push("* BYE Logging out");
                self.push(&format!("{tag} OK LOGOUT completed"));
                self.state = State::Closed;
                return Some(ServerEvent::Close);
            }
            Request::StartTls if self.tls_active => {
                self.error(format!("{tag} BAD TLS is active already"));
            }
            Request::StartTls if !self.options.starttls => {
                self.error(format!("{tag} BAD STARTTLS is not available"));
            }
            Request::StartTls => {
                self.push(&format!("{tag} OK Begin TLS negotiation now"));
                self.input.discard_all();
                self.state = State::AwaitingTls;
                return Some(ServerEvent::StartTls);
            }
            Request::Login(credentials) => {
                return self.login(tag, credentials, LoginMechanism::Login);
            }
            Request::AuthenticatePlain(Some(credentials)) => {
                return self.login(tag, credentials, LoginMechanism::AuthenticatePlain);
            }
            Request::AuthenticatePlain(None) if self.login_disabled() => {
                self.error(self.privacy_required(&tag));
            }
            Request::AuthenticatePlain(None) => {
                self.push("+ ");
                self.state = State::AuthResponse { tag };
            }
            Request::AuthenticateOther => {
                self.error(format!("{tag} NO Unsupported authentication mechanism"));
            }
            Request::NeedsLogin => self.error(needs_login(&tag)),
        }
        None
    }

    fn login(
        &mut self,
        tag: String,
        credentials: Result<Credentials, Refusal>,
        mechanism: LoginMechanism,
    ) -> Option<ServerEvent> {
        if self.login_disabled() {
            self.error(self.privacy_required(&tag));
            return None;
        }
        match credentials {
            Ok(Credentials { user, password }) => {
                self.state = State::LoginPending { tag: tag.clone() };
                Some(ServerEvent::Login(Login {
                    tag,
                    user,
                    password,
                    mechanism,
                }))
            }
            Err(refusal) => {
                let text = match refusal {
                    Refusal::Malformed | Refusal::Empty => {
                        "NO [AUTHENTICATIONFAILED] Empty or malformed credentials"
                    }
                    Refusal::OtherAuthzid => {
                        "NO [AUTHORIZATIONFAILED] Logging in as another user is not supported"
                    }
                    Refusal::NotUtf8 => {
                        "NO [AUTHENTICATIONFAILED] User name and password must be UTF-8"
                    }
                    Refusal::BadUser => "NO [AUTHENTICATIONFAILED] Invalid user name",
                };
                self.error(format!("{tag} {text}"));
                None
            }
        }
    }

    /// `IMAP4rev1 SASL-IR LITERAL- ID`, then `AUTH=PLAIN` unless login needs TLS first, and
    /// `STARTTLS`/`LOGINDISABLED` as they apply. Never an upstream mechanism.
    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 SASL-IR LITERAL- ID");
        if !self.login_disabled() {
            caps.push_str(" AUTH=PLAIN");
        }
        if self.options.starttls && !self.tls_active {
            caps.push_str(" STARTTLS");
        }
        if self.login_disabled() {
            caps.push_str(" LOGINDISABLED");
        }
        caps
    }

    fn login_disabled(&self) -> bool {
        self.options.require_tls && !self.tls_active
    }

    fn privacy_required(&self, tag: &str) -> String {
        if self.options.starttls {
            format!("{tag} NO [PRIVACYREQUIRED] Use STARTTLS first")
        } else {
            format!("{tag} NO [PRIVACYREQUIRED] Login requires TLS")
        }
    }

    fn nonsync_max(&self) -> u32 {
        self.options.limits.max_literal.min(LITERAL_MINUS_MAX)
    }

    /// Counts a command; false (and closing) when that is one too many.
    fn count_command(&mut self) -> bool {
        self.commands += 1;
        if self.commands > self.options.limits.max_commands {
            self.close("Too many commands before login");
            return false;
        }
        true
    }

    /// Sends a BAD or NO, and closes when that was the last one allowed.
    fn error(&mut self, line: String) {
        self.push(&line);
        self.errors += 1;
        if self.errors >= self.options.limits.max_errors {
            self.close("Too many errors");
        }
    }

    fn close(&mut self, reason: &str) {
        self.push(&format!("* BYE {reason}"));
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
            .field("state", &self.state)
            .field("tls_active", &self.tls_active)
            .field("commands", &self.commands)
            .field("errors", &self.errors)
            .field("failed_logins", &self.failed_logins)
            .field("buffered", &self.input.leftover().len())
            .finish_non_exhaustive()
    }
}

fn needs_login(tag: &str) -> String {
    format!("{tag} BAD Command invalid in this state: log in first")
}

/// `text` as one line of resp-text: controls (CR, LF, NUL…) become spaces, at most
/// [`MAX_TEXT`] octets, and never empty (`fallback`).
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
