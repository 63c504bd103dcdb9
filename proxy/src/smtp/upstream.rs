//! The SMTP upstream core: logs in to the real submission server with an OAuth bearer token.
//! Sans-IO: the driver feeds it the server's bytes ([`UpstreamCore::feed`]), writes out what it
//! produces ([`UpstreamCore::take_output`]) and acts on its [`UpstreamEvent`]s; sockets and TLS
//! are the driver's.
//!
//! One login, as the core sees it:
//!
//! ```text
//! greeting   220                       → our `EHLO name`
//!            anything else (554, 421)  → Failed(Bye)
//! plaintext  250 without STARTTLS      → Failed(NoStartTls); nothing more is sent
//!            250 with STARTTLS         → our `STARTTLS` → 220 → StartTls → (driver handshakes)
//!                                        → tls_started() → our `EHLO name` again
//! TLS on     250 (keywords kept)       → OAUTHBEARER if offered, else XOAUTH2, else
//!                                        Failed(NoMechanism) → NeedToken
//!            authenticate(token)       → `AUTH MECH` alone → 334 → the base64 response line
//!            235                       → Authenticated
//!            535 (or any 5xx)          → Rejected (Microsoft's immediate refusal)
//!            334 b64(JSON) → ack → 535 → Rejected (Google, Dovecot) → authenticate() once more
//!            4xx                       → Failed(Protocol): temporary, the client gets 454
//! ```
//!
//! Decisions:
//! - **No initial response, ever**: a token line is longer than RFC 5321's 512-octet command
//!   line (RFC 4954 §4 forbids the initial response then), and Microsoft documents the two-step
//!   form. Mechanism names go upper case (Microsoft compares them case-sensitively).
//! - **A 4xx during AUTH** (`454 4.7.0 Too many login attempts`, a `432`…) is temporary: the login
//!   fails as [`UpstreamFailure::Protocol`] with the server's words, so the client gets `454` and
//!   the one refresh-and-retry is not spent on a token that may be fine. A `421` at any time is
//!   the server closing: [`UpstreamFailure::Bye`].
//! - **The EHLO name** is the client's (checked again here: a domain or an address literal in
//!   shape, at most 255 octets), else `[127.0.0.1]`; Gmail refuses an empty one.
//! - A 5xx to the `AUTH` command itself (a mechanism the server refuses after all) is a
//!   rejection like a refused token: nothing secret went out.
//!
//! The `235` reply (and whatever the server sent after it) is what the client receives
//! ([`UpstreamCore::into_client_bytes`]); the post-TLS EHLO keywords are
//! [`UpstreamCore::extensions`], for the EHLO the proxy advertises. Everything before login is
//! bounded ([`MAX_REPLY`] per reply, [`MAX_PREAUTH_BYTES`] in all); the token only ever goes into
//! [`UpstreamCore::take_output`] once TLS is on.

mod reply;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

pub use crate::core::{UpstreamEvent, UpstreamFailure};
use secrecy::{ExposeSecret, SecretString};
use tokenlib::sasl::{self, Mechanism};
use zeroize::Zeroizing;

pub use reply::MAX_REPLY;
use reply::{FrameError, Framer, Reply, display_text};

/// The most bytes the server may send before the login completes (all replies together).
pub const MAX_PREAUTH_BYTES: usize = 1024 * 1024;

/// The most AUTH attempts per connection: the first one and the retry with a refreshed token.
/// A driver bug cannot turn into a login loop.
pub const MAX_ATTEMPTS: u32 = 2;

/// The EHLO name when the client's cannot be used.
pub const DEFAULT_HELO: &str = "[127.0.0.1]";

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The driver connects with TLS from the start (port 465); otherwise STARTTLS is required.
    pub implicit_tls: bool,
    /// The server's host name, as configured (OAUTHBEARER sends it).
    pub host: String,
    /// The server's port (OAUTHBEARER sends it).
    pub port: u16,
    /// The SASL identity (XOAUTH2 `user=`, OAUTHBEARER `a=`).
    pub user: String,
    /// The client's EHLO argument, or [`DEFAULT_HELO`]; anything that is not a domain or an
    /// address literal in shape is replaced by [`DEFAULT_HELO`].
    pub helo: String,
}

/// Where the login stands.
enum State {
    Greeting,
    /// Our EHLO is in flight.
    Ehlo,
    /// Our STARTTLS is in flight.
    StartTls,
    /// `StartTls` was reported; the driver is doing the handshake.
    AwaitTls,
    /// `NeedToken` or `Rejected` was reported; waiting for `authenticate`.
    AwaitToken,
    /// `AUTH MECH` went out; the response waits for the server's `334`.
    AwaitContinuation {
        response: SecretString,
    },
    /// The token went out: a `334` now is an error challenge.
    AwaitResult,
    /// We answered an error challenge; the `535` comes next.
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
            State::Ehlo => "ehlo",
            State::StartTls => "starttls",
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
    /// The EHLO name actually sent.
    helo: String,
    state: State,
    /// TLS is on (implicit, or after `tls_started`).
    tls: bool,
    /// The post-TLS EHLO keyword lines.
    extensions: Option<Vec<String>>,
    mechanism: Option<Mechanism>,
    attempts: u32,
    framer: Framer,
    /// Bytes consumed before login, against [`MAX_PREAUTH_BYTES`].
    received: usize,
    /// Bytes to write to the server; may hold the token, hence zeroized.
    output: Zeroizing<Vec<u8>>,
    events: VecDeque<UpstreamEvent>,
    /// The `235` reply, then whatever followed it: the client's.
    client_bytes: Vec<u8>,
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
        let helo = if is_helo_name(&options.helo) {
            options.helo.clone()
        } else {
            DEFAULT_HELO.to_owned()
        };
        let mut core = UpstreamCore {
            tls: options.implicit_tls,
            options,
            helo,
            state: State::Greeting,
            extensions: None,
            mechanism: None,
            attempts: 0,
            framer: Framer::default(),
            received: 0,
            output: Zeroizing::new(Vec::new()),
            events: VecDeque::new(),
            client_bytes: Vec::new(),
        };
        if let Some(problem) = problem {
            core.fail(UpstreamFailure::Protocol(problem));
        }
        core
    }

    /// Bytes from the server.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.state {
                State::Failed => return,
                State::Authenticated => {
                    self.client_bytes.extend_from_slice(input);
                    return;
                }
                State::AwaitTls => {
                    // Plaintext after the STARTTLS 220: a reply injection (CVE-2011-0411 class).
                    return self.protocol("the server sent data after agreeing to STARTTLS");
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
                        "the server sent a reply longer than {MAX_REPLY} bytes"
                    ));
                }
                Err(FrameError::Malformed) => {
                    return self.protocol("the server sent a line that is not an SMTP reply");
                }
                Ok((taken, reply)) => {
                    self.received += taken;
                    input = &input[taken..];
                    if let Some(reply) = reply {
                        self.on_reply(reply);
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

    /// The driver finished the TLS handshake after [`UpstreamEvent::StartTls`]: EHLO again
    /// (RFC 3207 §4.2: the plaintext keywords are forgotten).
    pub fn tls_started(&mut self) {
        match self.state {
            State::AwaitTls => {
                self.tls = true;
                self.extensions = None;
                self.send_ehlo();
            }
            State::Failed => {}
            _ => self.protocol("internal: tls_started() without a StartTls event"),
        }
    }

    /// Logs in with `token` (after `NeedToken`, or after `Rejected` for the one retry): `AUTH
    /// MECH` alone; the response follows the server's `334`.
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
            "upstream SMTP: authenticating"
        );
        self.write_line(format!("AUTH {}", mechanism.name()).as_bytes());
        self.state = State::AwaitContinuation { response };
    }

    /// After [`UpstreamEvent::Authenticated`]: what the client must receive, byte for byte: the
    /// server's `235` reply, then whatever it sent after it (the start of the spliced stream).
    /// Empty before `Authenticated`.
    pub fn into_client_bytes(self) -> Vec<u8> {
        if !matches!(self.state, State::Authenticated) {
            return Vec::new();
        }
        self.client_bytes
    }

    /// The mechanism chosen from the EHLO keywords, once known.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    /// The post-TLS EHLO keyword lines, verbatim (`SIZE 35882577`, `AUTH LOGIN XOAUTH2`…), from
    /// `NeedToken` on; empty before.
    pub fn extensions(&self) -> Vec<String> {
        self.extensions.clone().unwrap_or_default()
    }

    fn on_reply(&mut self, reply: Reply) {
        if reply.code == 421 {
            let text = reply.text();
            tracing::debug!(state = self.state.name(), text, "upstream SMTP: 421");
            return self.fail(UpstreamFailure::Bye(text));
        }
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Greeting if reply.code == 220 => self.send_ehlo(),
            State::Greeting => self.fail(UpstreamFailure::Bye(reply.text())),
            State::Ehlo if reply.code == 250 => self.on_ehlo(&reply),
            State::Ehlo => self.protocol(&format!("the server refused EHLO: {}", reply.text())),
            State::StartTls if reply.code == 220 => {
                tracing::debug!("upstream SMTP: STARTTLS accepted");
                self.state = State::AwaitTls;
                self.events.push_back(UpstreamEvent::StartTls);
            }
            State::StartTls => {
                self.protocol(&format!("the server refused STARTTLS: {}", reply.text()));
            }
            state @ (State::AwaitContinuation { .. }
            | State::AwaitResult
            | State::ErrorAcked { .. }) => self.on_auth_reply(state, reply),
            State::AwaitToken => self.protocol(&format!(
                "the server sent a reply nobody asked for: {}",
                reply.text()
            )),
            state @ (State::AwaitTls | State::Authenticated | State::Failed) => {
                // feed() hands no replies over in these states.
                debug_assert!(false, "reply in state {}", state.name());
                self.state = state;
            }
        }
    }

    /// The EHLO reply: STARTTLS first if TLS is not on yet, else pick the mechanism.
    fn on_ehlo(&mut self, reply: &Reply) {
        let keywords = reply.keywords();
        let first_word = |line: &String| line.split(' ').next().unwrap_or_default().to_owned();
        if !self.tls {
            if keywords
                .iter()
                .any(|l| first_word(l).eq_ignore_ascii_case("STARTTLS"))
            {
                self.write_line(b"STARTTLS");
                self.state = State::StartTls;
            } else {
                self.fail(UpstreamFailure::NoStartTls);
            }
            return;
        }
        let offered = mechanisms(&keywords);
        let mechanism = if offered.iter().any(|m| m == "OAUTHBEARER") {
            Mechanism::OAuthBearer
        } else if offered.iter().any(|m| m == "XOAUTH2") {
            Mechanism::XOAuth2
        } else {
            return self.fail(UpstreamFailure::NoMechanism);
        };
        self.extensions = Some(keywords);
        self.mechanism = Some(mechanism);
        self.state = State::AwaitToken;
        self.events
            .push_back(UpstreamEvent::NeedToken { mechanism });
    }

    /// A reply during the AUTH exchange; `state` is the one it arrived in.
    fn on_auth_reply(&mut self, state: State, reply: Reply) {
        match (state, reply.class()) {
            (State::AwaitContinuation { response }, _) if reply.code == 334 => {
                self.write_secret_line(response.expose_secret().as_bytes());
                self.state = State::AwaitResult;
            }
            (State::AwaitResult, _) if reply.code == 235 => {
                tracing::debug!("upstream SMTP: authenticated");
                self.client_bytes = reply.raw;
                self.state = State::Authenticated;
                self.events.push_back(UpstreamEvent::Authenticated);
            }
            (State::AwaitResult, _) if reply.code == 334 => {
                // After the token, a challenge is an error report that must be answered before
                // the server sends its 535 (RFC 7628 §3.2.3; Google's XOAUTH2 page).
                let status = std::str::from_utf8(reply.first_text())
                    .ok()
                    .and_then(sasl::decode_error_challenge)
                    .and_then(|c| c.status)
                    .map(|s| display_text(&s));
                let ack = self.mechanism.map_or("", Mechanism::error_ack);
                self.write_line(ack.as_bytes());
                self.state = State::ErrorAcked { status };
            }
            (state, 5) => {
                let status = match state {
                    State::ErrorAcked { status } => status,
                    _ => None,
                };
                let text = reply.text();
                tracing::debug!(?status, text, "upstream SMTP: token rejected");
                self.state = State::AwaitToken;
                self.events
                    .push_back(UpstreamEvent::Rejected { status, text });
            }
            (_, 4) => self.protocol(&format!(
                "the server refused the login for now: {}",
                reply.text()
            )),
            (state, _) => self.protocol(&format!(
                "unexpected reply during AUTH ({}): {}",
                state.name(),
                reply.text()
            )),
        }
    }

    fn send_ehlo(&mut self) {
        let line = format!("EHLO {}", self.helo);
        self.write_line(line.as_bytes());
        self.state = State::Ehlo;
    }

    fn protocol(&mut self, message: &str) {
        self.fail(UpstreamFailure::Protocol(message.to_string()));
    }

    fn fail(&mut self, failure: UpstreamFailure) {
        tracing::debug!(%failure, "upstream SMTP: login failed");
        self.state = State::Failed;
        // Nothing more goes to the server (and pending bytes may hold the token).
        self.output = Zeroizing::new(Vec::new());
        self.framer = Framer::default();
        self.client_bytes.clear();
        // A StartTls or NeedToken not yet taken must not be acted on (plaintext injected right
        // after the STARTTLS 220 arrives in the same read as the 220); a Rejected stays, it says
        // what happened before.
        self.events
            .retain(|e| matches!(e, UpstreamEvent::Rejected { .. }));
        self.events.push_back(UpstreamEvent::Failed(failure));
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

/// The SASL mechanisms in EHLO keyword lines, upper case: `AUTH A B` and old-style `AUTH=A B`.
fn mechanisms(keywords: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for line in keywords {
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        let upper = first.to_ascii_uppercase();
        if upper == "AUTH" {
            found.extend(words.map(str::to_ascii_uppercase));
        } else if let Some(mechanism) = upper.strip_prefix("AUTH=") {
            found.push(mechanism.to_owned());
            found.extend(words.map(str::to_ascii_uppercase));
        }
    }
    found
}

/// Whether `name` can follow `EHLO ` as it is: a domain (letters, digits, `-`, `_`, `.`) or an
/// address literal (`[…]` of printable ASCII without brackets or backslashes), at most 255
/// octets (RFC 5321 §4.1.4, §4.5.3.1.2; `_` for the Windows and printer names in the wild).
pub fn is_helo_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"[]\\".contains(&b));
    }
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Why `options` cannot go on the wire, if they cannot.
fn options_problem(options: &UpstreamOptions) -> Option<String> {
    if options.user.is_empty() || options.user.chars().any(char::is_control) {
        return Some("the upstream user name is empty or contains control characters".into());
    }
    if options.host.is_empty() || options.host.chars().any(|c| c.is_control() || c == ' ') {
        return Some(
            "the upstream host name is empty or contains spaces or control characters".into(),
        );
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
