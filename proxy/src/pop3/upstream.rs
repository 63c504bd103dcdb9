//! The POP3 upstream core: logs in to the real server with an OAuth bearer token (protocols.md
//! §4.5). Sans-IO: the driver feeds it the server's bytes ([`UpstreamCore::feed`]), writes out
//! what it produces ([`UpstreamCore::take_output`]) and acts on its [`UpstreamEvent`]s; sockets
//! and TLS are the driver's.
//!
//! One login, as the core sees it:
//!
//! ```text
//! greeting   +OK …                    → our `CAPA`          (-ERR → Failed(Bye))
//! plaintext  STLS not in CAPA, or CAPA refused → Failed(NoStartTls); nothing else is sent
//!            STLS in CAPA             → our `STLS` → +OK → StartTls → (driver handshakes) →
//!                                       tls_started() → `CAPA` again (the first is forgotten)
//! TLS on     SASL … OAUTHBEARER       → NeedToken(OAUTHBEARER), else XOAUTH2, else
//!                                       Failed(NoMechanism); CAPA refused → XOAUTH2
//!            authenticate(token)      → `AUTH MECH` alone → `+ ` → the base64 line
//!            +OK …                    → Authenticated (the client gets that line verbatim)
//!            -ERR …                   → Rejected (Microsoft: immediately after the token)
//!            + b64(JSON) → ack → -ERR → Rejected (Google, Dovecot) → authenticate() once more
//!            -ERR [SYS/TEMP] / [IN-USE] / [LOGIN-DELAY] → Failed(Bye)
//! ```
//!
//! Decisions:
//! - **No initial response**: `AUTH XOAUTH2` goes alone and the token follows the server's `+ `.
//!   With a token, the AUTH line would exceed RFC 5034 §4's 255 octets, and Microsoft documents
//!   exactly this two-line form (protocols.md §0 rule 6).
//! - **A server without CAPA** (`-ERR` to CAPA, RFC 1939-only): with TLS on, XOAUTH2 is tried
//!   (both providers that speak OAuth over POP3 have it). If the server then refuses `AUTH
//!   XOAUTH2` before asking for the token, that is `Failed(NoMechanism)`: no token was sent, so
//!   there is nothing to refresh. Without TLS it is `Failed(NoStartTls)`: STLS must be listed.
//! - **Temporary refusals** (`-ERR` with `[SYS/TEMP]`, `[IN-USE]` or `[LOGIN-DELAY]`, RFC 2449
//!   §8 / RFC 3206, at any point of the AUTH exchange) are `Failed(Bye(text))`, not `Rejected`:
//!   the token is not the problem, so refreshing it would burn a refresh and the one retry for
//!   nothing, and the client should hear "try later" (the driver maps `Failed` to
//!   `LoginFailure::Unavailable`, which the server core answers with `-ERR [SYS/TEMP]`; the
//!   server's own text, code included, is in the message).
//!
//! Everything before login is bounded (see [`MAX_LINE`], [`MAX_RESPONSE`],
//! [`MAX_PREAUTH_BYTES`]); the token only ever goes into [`UpstreamCore::take_output`] once TLS
//! is on, and nothing in a `Debug` output or a log line holds it.

mod response;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

pub use crate::core::{UpstreamEvent, UpstreamFailure};
use secrecy::{ExposeSecret, SecretString};
use tokenlib::sasl::{self, Mechanism};
use zeroize::Zeroizing;

pub use response::MAX_LINE;
use response::{FrameError, Framer, Reply, display_text};

/// The most bytes one answer may have (the CAPA list, all its lines together).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// The most bytes the server may send before the login completes (all lines together).
pub const MAX_PREAUTH_BYTES: usize = 1024 * 1024;

/// The most AUTH attempts per connection: the first one and the retry with a refreshed token
/// (DESIGN "One login", step 6). A driver bug cannot turn into a login loop.
pub const MAX_ATTEMPTS: u32 = 2;

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The driver connects with TLS from the start (port 995); otherwise STLS is required.
    pub implicit_tls: bool,
    /// The server's host name, as configured (OAUTHBEARER sends it).
    pub host: String,
    /// The server's port (OAUTHBEARER sends it).
    pub port: u16,
    /// The SASL identity (XOAUTH2 `user=`, OAUTHBEARER `a=`).
    pub user: String,
}

/// Where the login stands.
enum State {
    /// Waiting for the server's greeting.
    Greeting,
    /// Our CAPA is in flight; `lines` is `Some` once its `+OK` came.
    Capa {
        lines: Option<Vec<String>>,
    },
    /// Our STLS is in flight.
    Stls,
    /// `StartTls` was reported; the driver is doing the handshake.
    AwaitTls,
    /// `NeedToken` or `Rejected` was reported; waiting for `authenticate`.
    AwaitToken,
    /// `AUTH MECH` went out; the response waits for the server's `+`.
    AwaitContinuation {
        response: SecretString,
    },
    /// The token went out: a `+` now is an error challenge.
    AwaitResult,
    /// We answered an error challenge; the `-ERR` comes next.
    ErrorAcked {
        status: Option<String>,
    },
    Authenticated,
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Greeting => "greeting",
            State::Capa { .. } => "capa",
            State::Stls => "stls",
            State::AwaitTls => "await-tls",
            State::AwaitToken => "await-token",
            State::AwaitContinuation { .. } => "await-continuation",
            State::AwaitResult => "await-result",
            State::ErrorAcked { .. } => "error-acked",
            State::Authenticated => "authenticated",
            State::Failed => "failed",
        }
    }
}

/// The upstream login state machine. See the module documentation.
pub struct UpstreamCore {
    options: UpstreamOptions,
    state: State,
    /// TLS is on (implicit, or after `tls_started`).
    tls: bool,
    /// The CAPA lines of the current (TLS or plaintext) phase; `None` before CAPA's answer or
    /// when the server refused CAPA. Forgotten at the STLS boundary.
    capabilities: Option<Vec<String>>,
    mechanism: Option<Mechanism>,
    attempts: u32,
    framer: Framer,
    /// Bytes consumed before login, against [`MAX_PREAUTH_BYTES`].
    received: usize,
    /// Bytes of the current answer (CAPA's list), against [`MAX_RESPONSE`].
    response_bytes: usize,
    /// Bytes to write to the server; may hold the token, hence zeroized.
    output: Zeroizing<Vec<u8>>,
    events: VecDeque<UpstreamEvent>,
    /// The server's `+OK` that ended the login, verbatim.
    ok_line: Vec<u8>,
    /// Bytes after it: the start of the spliced stream.
    trailing: Vec<u8>,
}

impl fmt::Debug for UpstreamCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No output bytes (they may hold the token) and no server bytes.
        f.debug_struct("UpstreamCore")
            .field("host", &self.options.host)
            .field("port", &self.options.port)
            .field("state", &self.state.name())
            .field("tls", &self.tls)
            .field("mechanism", &self.mechanism)
            .field("attempts", &self.attempts)
            .field("pending_output_len", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl UpstreamCore {
    /// A core waiting for the server's greeting. Options that cannot go on the wire safely
    /// (control characters in the user or host) fail at once.
    pub fn new(options: UpstreamOptions) -> UpstreamCore {
        let problem = options_problem(&options);
        let mut core = UpstreamCore {
            tls: options.implicit_tls,
            options,
            state: State::Greeting,
            capabilities: None,
            mechanism: None,
            attempts: 0,
            framer: Framer::default(),
            received: 0,
            response_bytes: 0,
            output: Zeroizing::new(Vec::new()),
            events: VecDeque::new(),
            ok_line: Vec::new(),
            trailing: Vec::new(),
        };
        if let Some(problem) = problem {
            core.protocol(problem);
        }
        core
    }

    /// Bytes from the server.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.state {
                State::Failed => return,
                State::Authenticated => {
                    self.trailing.extend_from_slice(input);
                    return;
                }
                State::AwaitTls => {
                    // Plaintext after the STLS +OK: a response injection (CVE-2011-0411 class).
                    return self.protocol("the server sent data after agreeing to STLS");
                }
                _ => {}
            }
            let room = MAX_PREAUTH_BYTES - self.received;
            if room == 0 {
                return self.protocol(&format!(
                    "the server sent more than {MAX_PREAUTH_BYTES} bytes before the login finished"
                ));
            }
            let chunk = &input[..input.len().min(room)];
            match self.framer.push(chunk) {
                Err(FrameError::TooLong) => {
                    return self.protocol(&format!(
                        "the server sent a line longer than {MAX_LINE} bytes"
                    ));
                }
                Ok((taken, line)) => {
                    self.received += taken;
                    input = &input[taken..];
                    if let Some(line) = line {
                        self.on_line(line);
                    }
                }
            }
        }
    }

    /// The server closed the connection.
    pub fn eof(&mut self) {
        if !matches!(self.state, State::Authenticated | State::Failed) {
            self.fail(UpstreamFailure::Closed);
        }
    }

    /// Bytes to write to the server. They may contain the token: write them and drop them.
    pub fn take_output(&mut self) -> Zeroizing<Vec<u8>> {
        std::mem::take(&mut self.output)
    }

    /// The next thing the driver must act on.
    pub fn next_event(&mut self) -> Option<UpstreamEvent> {
        self.events.pop_front()
    }

    /// The driver finished the TLS handshake after [`UpstreamEvent::StartTls`]. The capabilities
    /// seen in plaintext are forgotten and asked for again.
    pub fn tls_started(&mut self) {
        match self.state {
            State::AwaitTls => {
                self.tls = true;
                self.capabilities = None;
                self.send_capa();
            }
            State::Failed => {}
            _ => self.protocol("internal: tls_started() without a StartTls event"),
        }
    }

    /// Logs in with `token` (after `NeedToken`, or after `Rejected` for the one retry): sends
    /// `AUTH MECH` alone; the token follows the server's `+ `.
    pub fn authenticate(&mut self, token: &SecretString) {
        match self.state {
            State::AwaitToken => {}
            State::Failed => return,
            _ => return self.protocol("internal: authenticate() without a NeedToken event"),
        }
        if self.attempts >= MAX_ATTEMPTS {
            return self.protocol("internal: too many authentication attempts");
        }
        let Some(mechanism) = self.mechanism else {
            return self.protocol("internal: authenticate() before the mechanism is known");
        };
        self.attempts += 1;
        let host = (mechanism == Mechanism::OAuthBearer)
            .then_some((self.options.host.as_str(), self.options.port));
        let response = sasl::encoded_client_response(mechanism, &self.options.user, host, token);
        tracing::debug!(
            mechanism = mechanism.name(),
            attempt = self.attempts,
            "upstream POP3: authenticating"
        );
        self.write_line(format!("AUTH {}", mechanism.name()).as_bytes());
        self.state = State::AwaitContinuation { response };
    }

    /// After [`UpstreamEvent::Authenticated`]: what the client must receive, byte for byte: the
    /// server's `+OK` line, then whatever the server sent after it (the start of the spliced
    /// stream). Empty before `Authenticated`.
    pub fn into_client_bytes(self) -> Vec<u8> {
        if !matches!(self.state, State::Authenticated) {
            return Vec::new();
        }
        let mut out = self.ok_line;
        out.extend_from_slice(&self.trailing);
        out
    }

    /// The mechanism chosen from the capabilities, once known.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    /// The server's CAPA lines over TLS (as received, made printable), once known: from
    /// `NeedToken` on. Empty before, in plaintext, and for a server that refused CAPA. The
    /// server core keeps only its allow-list of them (`server::common_capabilities`).
    pub fn capabilities(&self) -> Vec<String> {
        match &self.capabilities {
            Some(lines) if self.tls => lines.clone(),
            _ => Vec::new(),
        }
    }

    fn on_line(&mut self, line: Vec<u8>) {
        let reply = response::classify(&line);
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Greeting => self.on_greeting(reply),
            State::Capa { lines } => self.on_capa_line(lines, reply, &line),
            State::Stls => self.on_stls_reply(reply),
            state @ (State::AwaitContinuation { .. }
            | State::AwaitResult
            | State::ErrorAcked { .. }) => self.on_auth_reply(state, reply, &line),
            State::AwaitToken => self.unexpected(reply),
            state @ (State::AwaitTls | State::Authenticated | State::Failed) => {
                // feed() hands no lines over in these states.
                debug_assert!(false, "line in state {}", state.name());
                self.state = state;
            }
        }
    }

    fn on_greeting(&mut self, reply: Reply<'_>) {
        match reply {
            Reply::Ok(_) => self.send_capa(),
            Reply::Err(text) => self.fail(UpstreamFailure::Bye(display_text(text))),
            other => self.protocol(&format!(
                "the greeting is not a POP3 greeting ({})",
                kind(&other)
            )),
        }
    }

    /// A line of the CAPA answer: its status line, then capabilities until `.`.
    fn on_capa_line(&mut self, lines: Option<Vec<String>>, reply: Reply<'_>, raw: &[u8]) {
        let Some(mut lines) = lines else {
            return match reply {
                Reply::Ok(_) => {
                    self.response_bytes = raw.len();
                    self.state = State::Capa {
                        lines: Some(Vec::new()),
                    };
                }
                Reply::Err(_) => self.after_capabilities_known(None),
                other => self.unexpected(other),
            };
        };
        self.response_bytes += raw.len();
        if self.response_bytes > MAX_RESPONSE {
            return self.protocol(&format!(
                "the server's CAPA answer is longer than {MAX_RESPONSE} bytes"
            ));
        }
        match response::strip_ending(raw) {
            b"." => self.after_capabilities_known(Some(lines)),
            line => {
                // Dot-stuffing (RFC 1939 §3): a line that starts with a dot had one added.
                let line = line.strip_prefix(b".").unwrap_or(line);
                lines.push(display_text(line));
                self.state = State::Capa { lines: Some(lines) };
            }
        }
    }

    fn on_stls_reply(&mut self, reply: Reply<'_>) {
        match reply {
            Reply::Ok(_) => {
                tracing::debug!("upstream POP3: STLS accepted");
                self.state = State::AwaitTls;
                self.events.push_back(UpstreamEvent::StartTls);
            }
            Reply::Err(text) => {
                self.protocol(&format!("the server refused STLS: {}", display_text(text)))
            }
            other => self.unexpected(other),
        }
    }

    /// CAPA answered (`None`: refused): STLS first if TLS is not on yet, else pick the
    /// mechanism.
    fn after_capabilities_known(&mut self, lines: Option<Vec<String>>) {
        self.capabilities = lines;
        if !self.tls {
            let stls = self
                .capabilities
                .as_deref()
                .is_some_and(|lines| response::has_tag(lines, "STLS"));
            if stls {
                self.write_line(b"STLS");
                self.state = State::Stls;
            } else {
                self.fail(UpstreamFailure::NoStartTls);
            }
            return;
        }
        let mechanism = match self.capabilities.as_deref() {
            // RFC 1939-only server: try the mechanism both OAuth POP3 providers have.
            None => Mechanism::XOAuth2,
            Some(lines) => {
                let offered = response::sasl_mechanisms(lines);
                if offered.iter().any(|m| m == "OAUTHBEARER") {
                    Mechanism::OAuthBearer
                } else if offered.iter().any(|m| m == "XOAUTH2") {
                    Mechanism::XOAuth2
                } else {
                    return self.fail(UpstreamFailure::NoMechanism);
                }
            }
        };
        self.mechanism = Some(mechanism);
        self.state = State::AwaitToken;
        self.events
            .push_back(UpstreamEvent::NeedToken { mechanism });
    }

    /// A line during the AUTH exchange; `state` is the one it arrived in.
    fn on_auth_reply(&mut self, state: State, reply: Reply<'_>, raw: &[u8]) {
        match (state, reply) {
            (State::AwaitContinuation { response }, Reply::Continuation(_)) => {
                self.write_secret_line(response.expose_secret().as_bytes());
                self.state = State::AwaitResult;
            }
            (State::AwaitResult, Reply::Continuation(challenge)) => {
                // After the token, a challenge is an error report that must be answered before
                // the server sends its -ERR (RFC 7628 §3.2.3; Google's XOAUTH2 page; Dovecot).
                let status = std::str::from_utf8(challenge)
                    .ok()
                    .and_then(sasl::decode_error_challenge)
                    .and_then(|c| c.status)
                    .map(|s| display_text(s.as_bytes()));
                let ack = self.mechanism.map_or("", Mechanism::error_ack);
                self.write_line(ack.as_bytes());
                self.state = State::ErrorAcked { status };
            }
            (State::ErrorAcked { .. }, Reply::Continuation(_)) => {
                self.protocol("a second challenge after the error challenge")
            }
            (State::AwaitContinuation { .. }, Reply::Ok(_)) => {
                self.protocol("the server accepted AUTH before the token was sent")
            }
            (State::AwaitResult | State::ErrorAcked { .. }, Reply::Ok(_)) => {
                self.ok_line = raw.to_vec();
                tracing::debug!("upstream POP3: authenticated");
                self.state = State::Authenticated;
                self.events.push_back(UpstreamEvent::Authenticated);
            }
            (state, Reply::Err(text)) => {
                let temporary = response::is_temporary(text);
                let text = display_text(text);
                if temporary {
                    tracing::debug!(text, "upstream POP3: temporary refusal");
                    return self.fail(UpstreamFailure::Bye(text));
                }
                let status = match state {
                    State::AwaitContinuation { .. } if self.capabilities.is_none() => {
                        // No CAPA, XOAUTH2 guessed, and refused before any token was sent.
                        return self.fail(UpstreamFailure::NoMechanism);
                    }
                    State::ErrorAcked { status } => status,
                    _ => None,
                };
                tracing::debug!(?status, text, "upstream POP3: token rejected");
                self.state = State::AwaitToken;
                self.events
                    .push_back(UpstreamEvent::Rejected { status, text });
            }
            (_, other) => self.unexpected(other),
        }
    }

    fn unexpected(&mut self, reply: Reply<'_>) {
        let what = kind(&reply);
        self.protocol(&format!("unexpected {what} from the server"));
    }

    fn protocol(&mut self, message: &str) {
        self.fail(UpstreamFailure::Protocol(message.to_string()));
    }

    fn fail(&mut self, failure: UpstreamFailure) {
        tracing::debug!(%failure, "upstream POP3: login failed");
        self.state = State::Failed;
        // Nothing more goes to the server (and pending bytes may hold the token).
        self.output = Zeroizing::new(Vec::new());
        self.framer = Framer::default();
        // A StartTls or NeedToken not yet taken must not be acted on (plaintext injected right
        // after the STLS +OK arrives in the same read as the +OK); a Rejected stays, it says
        // what happened before.
        self.events
            .retain(|e| matches!(e, UpstreamEvent::Rejected { .. }));
        self.events.push_back(UpstreamEvent::Failed(failure));
    }

    fn send_capa(&mut self) {
        self.write_line(b"CAPA");
        self.response_bytes = 0;
        self.state = State::Capa { lines: None };
    }

    fn write_line(&mut self, line: &[u8]) {
        self.write_secret_line(line);
    }

    /// Appends `line` and CRLF to the output without leaving a copy behind in a reallocated
    /// buffer.
    fn write_secret_line(&mut self, line: &[u8]) {
        let len = line.len() + 2;
        if self.output.capacity() - self.output.len() < len {
            let mut bigger = Zeroizing::new(Vec::with_capacity(self.output.len() + len));
            bigger.extend_from_slice(&self.output);
            self.output = bigger; // The old buffer is zeroized as it drops.
        }
        self.output.extend_from_slice(line);
        self.output.extend_from_slice(b"\r\n");
    }
}

/// What kind of line it was, for error messages (no server text).
fn kind(reply: &Reply<'_>) -> &'static str {
    match reply {
        Reply::Ok(_) => "+OK",
        Reply::Err(_) => "-ERR",
        Reply::Continuation(_) => "SASL challenge",
        Reply::Other(_) => "line that is not a POP3 status",
    }
}

/// Why `options` cannot go on the wire, if they cannot.
fn options_problem(options: &UpstreamOptions) -> Option<&'static str> {
    if options.user.is_empty() || options.user.chars().any(char::is_control) {
        return Some("the upstream user name is empty or contains control characters");
    }
    if options.host.is_empty() || options.host.chars().any(|c| c.is_control() || c == ' ') {
        return Some("the upstream host name is empty or contains spaces or control characters");
    }
    None
}

impl crate::core::UpstreamCore for UpstreamCore {
    fn feed(&mut self, input: &[u8]) {
        UpstreamCore::feed(self, input)
    }
    fn eof(&mut self) {
        UpstreamCore::eof(self)
    }
    fn take_output(&mut self) -> Zeroizing<Vec<u8>> {
        UpstreamCore::take_output(self)
    }
    fn next_event(&mut self) -> Option<UpstreamEvent> {
        UpstreamCore::next_event(self)
    }
    fn tls_started(&mut self) {
        UpstreamCore::tls_started(self)
    }
    fn authenticate(&mut self, token: &SecretString) {
        UpstreamCore::authenticate(self, token)
    }
    fn into_client_bytes(self) -> Vec<u8> {
        UpstreamCore::into_client_bytes(self)
    }
    fn mechanism(&self) -> Option<Mechanism> {
        UpstreamCore::mechanism(self)
    }
}
