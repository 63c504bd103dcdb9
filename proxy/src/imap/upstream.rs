//! The IMAP upstream core: logs in to the real server with an OAuth bearer token. Sans-IO: the
//! driver feeds it the server's bytes ([`UpstreamCore::feed`]), writes out what it produces
//! ([`UpstreamCore::take_output`]) and acts on its [`UpstreamEvent`]s; sockets and TLS are the
//! driver's.
//!
//! One login, as the core sees it:
//!
//! ```text
//! greeting   * OK [CAPABILITY …]      → capabilities
//!            * OK …                   → our `moN CAPABILITY` → capabilities
//!            * PREAUTH, * BYE         → Failed
//! plaintext  STARTTLS not offered     → Failed(NoStartTls); nothing is sent
//!            STARTTLS offered         → our `moN STARTTLS` → OK → StartTls → (driver
//!                                       handshakes) → tls_started() → `moN CAPABILITY`
//! TLS on     NeedToken → authenticate(token) → `CLIENTTAG AUTHENTICATE MECH [b64]`
//!            CLIENTTAG OK             → Authenticated
//!            CLIENTTAG NO             → Rejected (Microsoft's immediate NO)
//!            + b64(JSON) → ack → NO   → Rejected (Google, Dovecot) → authenticate() once more
//! ```
//!
//! The AUTHENTICATE runs under the client's own tag, so the server's tagged `OK [CAPABILITY …]`
//! and the untagged responses before it are exactly what the client must see after its LOGIN.
//! Everything before login is bounded (see [`MAX_FRAME`], [`MAX_PREAUTH_BYTES`]); the token only
//! ever goes into [`UpstreamCore::take_output`] once TLS is on.

mod response;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

pub use crate::core::{UpstreamEvent, UpstreamFailure};
use secrecy::{ExposeSecret, SecretString};
use tokenlib::sasl::{self, Mechanism};
use zeroize::Zeroizing;

pub use response::MAX_FRAME;
use response::{Capabilities, FrameError, Framer, Response, Status, display_text};

/// The most bytes the server may send before the login completes (all frames together).
pub const MAX_PREAUTH_BYTES: usize = 1024 * 1024;

/// The most AUTHENTICATE attempts per connection: the first one and the retry with a refreshed
/// token (DESIGN "One login", step 6). A driver bug cannot turn into a login loop.
pub const MAX_ATTEMPTS: u32 = 2;

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The driver connects with TLS from the start (port 993); otherwise STARTTLS is required.
    pub implicit_tls: bool,
    /// The server's host name, as configured (OAUTHBEARER sends it).
    pub host: String,
    /// The server's port (OAUTHBEARER sends it).
    pub port: u16,
    /// The SASL identity (XOAUTH2 `user=`, OAUTHBEARER `a=`).
    pub user: String,
    /// The client's tag: the AUTHENTICATE runs under it, so the server's tagged OK can go to the
    /// client untouched.
    pub tag: String,
}

/// Where the login stands.
enum State {
    /// Waiting for the server's greeting.
    Greeting,
    /// Our CAPABILITY (tag in `internal_tag`) is in flight.
    Capability,
    /// Our STARTTLS is in flight.
    StartTls,
    /// `StartTls` was reported; the driver is doing the handshake.
    AwaitTls,
    /// `NeedToken` or `Rejected` was reported; waiting for `authenticate`.
    AwaitToken,
    /// AUTHENTICATE went out without an initial response; the response waits for the server's `+`.
    AwaitContinuation {
        response: SecretString,
    },
    /// The token went out: a `+` now is an error challenge.
    AwaitResult,
    /// We answered an error challenge; the tagged NO comes next.
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
            State::Capability => "capability",
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
    state: State,
    /// TLS is on (implicit, or after `tls_started`).
    tls: bool,
    /// The server's capabilities, when known (forgotten at the STARTTLS boundary).
    capabilities: Option<Capabilities>,
    mechanism: Option<Mechanism>,
    attempts: u32,
    /// Tag of our own CAPABILITY/STARTTLS command in flight.
    internal_tag: String,
    internal_count: u32,
    framer: Framer,
    /// Bytes consumed before login, against [`MAX_PREAUTH_BYTES`].
    received: usize,
    /// Bytes to write to the server; may hold the token, hence zeroized.
    output: Zeroizing<Vec<u8>>,
    events: VecDeque<UpstreamEvent>,
    /// The current attempt's untagged responses (then the tagged OK), for the client.
    kept: Vec<u8>,
    /// Bytes after the tagged OK: the start of the spliced stream.
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
    /// A core waiting for the server's greeting. Options that cannot go on the wire safely (a tag
    /// that is not an IMAP tag, control characters in the user or host) fail at once.
    pub fn new(options: UpstreamOptions) -> UpstreamCore {
        let problem = options_problem(&options);
        let mut core = UpstreamCore {
            tls: options.implicit_tls,
            options,
            state: State::Greeting,
            capabilities: None,
            mechanism: None,
            attempts: 0,
            internal_tag: String::new(),
            internal_count: 0,
            framer: Framer::default(),
            received: 0,
            output: Zeroizing::new(Vec::new()),
            events: VecDeque::new(),
            kept: Vec::new(),
            trailing: Vec::new(),
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
                    self.trailing.extend_from_slice(input);
                    return;
                }
                State::AwaitTls => {
                    // Plaintext after the STARTTLS OK: a response injection (CVE-2011-0411 class).
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
                        "the server sent a response longer than {MAX_FRAME} bytes"
                    ));
                }
                Ok((taken, frame)) => {
                    self.received += taken;
                    input = &input[taken..];
                    if let Some(frame) = frame {
                        self.on_frame(frame);
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
                self.send_internal("CAPABILITY");
                self.state = State::Capability;
            }
            State::Failed => {}
            _ => self.protocol("internal: tls_started() without a StartTls event"),
        }
    }

    /// Logs in with `token` (after `NeedToken`, or after `Rejected` for the one retry).
    pub fn authenticate(&mut self, token: &SecretString) {
        match self.state {
            State::AwaitToken => {}
            State::Failed => return,
            _ => return self.protocol("internal: authenticate() without a NeedToken event"),
        }
        if self.attempts >= MAX_ATTEMPTS {
            return self.protocol("internal: too many authentication attempts");
        }
        let (Some(mechanism), Some(caps)) = (self.mechanism, &self.capabilities) else {
            return self.protocol("internal: authenticate() before the mechanism is known");
        };
        let sasl_ir = caps.has("SASL-IR");
        self.attempts += 1;
        self.kept.clear();
        let host = (mechanism == Mechanism::OAuthBearer)
            .then_some((self.options.host.as_str(), self.options.port));
        let response = sasl::encoded_client_response(mechanism, &self.options.user, host, token);
        let command = format!("{} AUTHENTICATE {}", self.options.tag, mechanism.name());
        tracing::debug!(
            mechanism = mechanism.name(),
            attempt = self.attempts,
            "upstream IMAP: authenticating"
        );
        if sasl_ir {
            self.write_secret_line(&[
                command.as_bytes(),
                b" ",
                response.expose_secret().as_bytes(),
            ]);
            self.state = State::AwaitResult;
        } else {
            self.write_line(command.as_bytes());
            self.state = State::AwaitContinuation { response };
        }
    }

    /// After [`UpstreamEvent::Authenticated`]: what the client must receive, byte for byte: the
    /// untagged responses of the successful attempt, the tagged OK, then whatever the server sent
    /// after it (the start of the spliced stream). Empty before `Authenticated`.
    pub fn into_client_bytes(self) -> Vec<u8> {
        if !matches!(self.state, State::Authenticated) {
            return Vec::new();
        }
        let mut out = self.kept;
        out.extend_from_slice(&self.trailing);
        out
    }

    /// The mechanism chosen from the capabilities, once known.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    fn on_frame(&mut self, frame: Vec<u8>) {
        let response = response::classify(&frame);
        // A BYE ends the login whatever the state.
        match response {
            Response::UntaggedStatus(Status::Bye, text) => {
                let text = display_text(text.whole);
                tracing::debug!(state = self.state.name(), text, "upstream IMAP: BYE");
                return self.fail(UpstreamFailure::Bye(text));
            }
            Response::UntaggedStatus(Status::Preauth, _)
                if !matches!(self.state, State::Greeting) =>
            {
                return self.protocol("PREAUTH after the greeting");
            }
            _ => {}
        }
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Greeting => self.on_greeting(response),
            State::Capability => self.on_capability_reply(response),
            State::StartTls => self.on_starttls_reply(response),
            State::AwaitToken => match response {
                Response::UntaggedStatus(..)
                | Response::UntaggedCapability(_)
                | Response::UntaggedOther => self.state = State::AwaitToken,
                other => self.unexpected(&other),
            },
            state @ (State::AwaitContinuation { .. }
            | State::AwaitResult
            | State::ErrorAcked { .. }) => self.on_auth_reply(state, response, &frame),
            state @ (State::AwaitTls | State::Authenticated | State::Failed) => {
                // feed() hands no frames over in these states.
                debug_assert!(false, "frame in state {}", state.name());
                self.state = state;
            }
        }
    }

    fn on_greeting(&mut self, response: Response<'_>) {
        match response {
            Response::UntaggedStatus(Status::Ok, text) => {
                self.capabilities = text.capabilities().map(Capabilities::parse);
                self.after_capabilities_known();
            }
            Response::UntaggedStatus(Status::Preauth, _) => self.fail(UpstreamFailure::Preauth),
            other => self.protocol(&format!(
                "the greeting is not an IMAP greeting ({})",
                kind(&other)
            )),
        }
    }

    fn on_capability_reply(&mut self, response: Response<'_>) {
        self.state = State::Capability;
        match response {
            Response::UntaggedCapability(list) => {
                self.capabilities = Some(Capabilities::parse(list));
            }
            Response::UntaggedStatus(..) | Response::UntaggedOther => {}
            Response::Tagged { tag, status, text } if tag == self.internal_tag.as_bytes() => {
                if status != Status::Ok {
                    return self.protocol(&format!(
                        "the server refused CAPABILITY: {}",
                        display_text(text.whole)
                    ));
                }
                if let Some(list) = text.capabilities() {
                    self.capabilities = Some(Capabilities::parse(list));
                }
                if self.capabilities.is_none() {
                    return self.protocol("the server sent no capabilities");
                }
                self.after_capabilities_known();
            }
            other => self.unexpected(&other),
        }
    }

    fn on_starttls_reply(&mut self, response: Response<'_>) {
        self.state = State::StartTls;
        match response {
            Response::UntaggedStatus(..)
            | Response::UntaggedCapability(_)
            | Response::UntaggedOther => {}
            Response::Tagged { tag, status, text } if tag == self.internal_tag.as_bytes() => {
                if status != Status::Ok {
                    return self.protocol(&format!(
                        "the server refused STARTTLS: {}",
                        display_text(text.whole)
                    ));
                }
                tracing::debug!("upstream IMAP: STARTTLS accepted");
                self.state = State::AwaitTls;
                self.events.push_back(UpstreamEvent::StartTls);
            }
            other => self.unexpected(&other),
        }
    }

    /// Capabilities known: STARTTLS first if TLS is not on yet, else pick the mechanism.
    fn after_capabilities_known(&mut self) {
        let Some(caps) = &self.capabilities else {
            self.send_internal("CAPABILITY");
            self.state = State::Capability;
            return;
        };
        if !self.tls {
            if caps.has("STARTTLS") {
                self.send_internal("STARTTLS");
                self.state = State::StartTls;
            } else {
                self.fail(UpstreamFailure::NoStartTls);
            }
            return;
        }
        let mechanism = if caps.has("AUTH=OAUTHBEARER") {
            Mechanism::OAuthBearer
        } else if caps.has("AUTH=XOAUTH2") {
            Mechanism::XOAuth2
        } else {
            return self.fail(UpstreamFailure::NoMechanism);
        };
        self.mechanism = Some(mechanism);
        self.state = State::AwaitToken;
        self.events
            .push_back(UpstreamEvent::NeedToken { mechanism });
    }

    /// A frame during the AUTHENTICATE exchange; `state` is the one it arrived in.
    fn on_auth_reply(&mut self, state: State, response: Response<'_>, frame: &[u8]) {
        match response {
            Response::UntaggedStatus(..)
            | Response::UntaggedCapability(_)
            | Response::UntaggedOther => {
                // `* CAPABILITY`, `* OK [ALERT]`, `* NO [WEBALERT]`: the client gets them if this
                // attempt succeeds (bounded by MAX_PREAUTH_BYTES like everything else).
                self.kept.extend_from_slice(frame);
                self.state = state;
            }
            Response::Continuation(challenge) => match state {
                State::AwaitContinuation { response } => {
                    self.write_secret_line(&[response.expose_secret().as_bytes()]);
                    self.state = State::AwaitResult;
                }
                State::AwaitResult => {
                    // After the token, a challenge is an error report that must be answered
                    // before the server sends its NO (RFC 7628 §3.2.3; Google's XOAUTH2 page).
                    let status = std::str::from_utf8(challenge)
                        .ok()
                        .and_then(sasl::decode_error_challenge)
                        .and_then(|c| c.status)
                        .map(|s| display_text(s.as_bytes()));
                    let ack = self.mechanism.map_or("", Mechanism::error_ack);
                    self.write_line(ack.as_bytes());
                    self.state = State::ErrorAcked { status };
                }
                _ => self.protocol("a second challenge after the error challenge"),
            },
            Response::Tagged { tag, status, text } if tag == self.options.tag.as_bytes() => {
                match status {
                    Status::Ok => {
                        self.kept.extend_from_slice(frame);
                        tracing::debug!("upstream IMAP: authenticated");
                        self.state = State::Authenticated;
                        self.events.push_back(UpstreamEvent::Authenticated);
                    }
                    Status::No => {
                        let status = match state {
                            State::ErrorAcked { status } => status,
                            _ => None,
                        };
                        let text = display_text(text.whole);
                        tracing::debug!(?status, text, "upstream IMAP: token rejected");
                        self.kept.clear();
                        self.state = State::AwaitToken;
                        self.events
                            .push_back(UpstreamEvent::Rejected { status, text });
                    }
                    _ => self.protocol(&format!(
                        "the server answered AUTHENTICATE with BAD: {}",
                        display_text(text.whole)
                    )),
                }
            }
            other => self.unexpected(&other),
        }
    }

    fn unexpected(&mut self, response: &Response<'_>) {
        let what = kind(response);
        self.protocol(&format!("unexpected {what} from the server"));
    }

    fn protocol(&mut self, message: &str) {
        self.fail(UpstreamFailure::Protocol(message.to_string()));
    }

    fn fail(&mut self, failure: UpstreamFailure) {
        tracing::debug!(%failure, "upstream IMAP: login failed");
        self.state = State::Failed;
        // Nothing more goes to the server (and pending bytes may hold the token).
        self.output = Zeroizing::new(Vec::new());
        self.framer = Framer::default();
        self.kept.clear();
        // A StartTls or NeedToken not yet taken must not be acted on (plaintext injected right
        // after the STARTTLS OK arrives in the same read as the OK); a Rejected stays, it says
        // what happened before.
        self.events
            .retain(|e| matches!(e, UpstreamEvent::Rejected { .. }));
        self.events.push_back(UpstreamEvent::Failed(failure));
    }

    /// Sends `command` under a fresh internal tag (`mo1`, `mo2`, …).
    fn send_internal(&mut self, command: &str) {
        self.internal_count += 1;
        self.internal_tag = format!("mo{}", self.internal_count);
        let line = format!("{} {command}", self.internal_tag);
        self.write_line(line.as_bytes());
    }

    fn write_line(&mut self, line: &[u8]) {
        self.write_secret_line(&[line]);
    }

    /// Appends `parts` and CRLF to the output without leaving a copy behind in a reallocated
    /// buffer.
    fn write_secret_line(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 2;
        if self.output.capacity() - self.output.len() < len {
            let mut bigger = Zeroizing::new(Vec::with_capacity(self.output.len() + len));
            bigger.extend_from_slice(&self.output);
            self.output = bigger; // The old buffer is zeroized as it drops.
        }
        for part in parts {
            self.output.extend_from_slice(part);
        }
        self.output.extend_from_slice(b"\r\n");
    }
}

/// What kind of response it was, for error messages (no server text).
fn kind(response: &Response<'_>) -> &'static str {
    match response {
        Response::Continuation(_) => "continuation request",
        Response::UntaggedStatus(..) => "untagged status response",
        Response::UntaggedCapability(_) => "CAPABILITY response",
        Response::UntaggedOther => "untagged response",
        Response::Tagged { .. } => "tagged response",
        Response::Malformed => "line that is not an IMAP response",
    }
}

/// Why `options` cannot go on the wire, if they cannot.
fn options_problem(options: &UpstreamOptions) -> Option<String> {
    // RFC 9051 tag: 1*<any ASTRING-CHAR except "+">.
    let tag_ok = !options.tag.is_empty()
        && options
            .tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b));
    if !tag_ok {
        return Some("internal: the client's tag is not a valid IMAP tag".into());
    }
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
    fn take_output(&mut self) -> zeroize::Zeroizing<Vec<u8>> {
        UpstreamCore::take_output(self)
    }
    fn next_event(&mut self) -> Option<UpstreamEvent> {
        UpstreamCore::next_event(self)
    }
    fn tls_started(&mut self) {
        UpstreamCore::tls_started(self)
    }
    fn authenticate(&mut self, token: &secrecy::SecretString) {
        UpstreamCore::authenticate(self, token)
    }
    fn into_client_bytes(self) -> Vec<u8> {
        UpstreamCore::into_client_bytes(self)
    }
    fn mechanism(&self) -> Option<tokenlib::sasl::Mechanism> {
        UpstreamCore::mechanism(self)
    }
}
