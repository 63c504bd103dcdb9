//! Login checks against mail servers: connect (implicit TLS, or STARTTLS that must be offered),
//! read the capabilities, log in — with an OAuth token (OAUTHBEARER or XOAUTH2, forced or the
//! preferred one offered) or, towards the local proxy, with the local password — and run one
//! harmless command after it (IMAP `LIST "" ""`, POP3 `STAT`, SMTP `NOOP`: Microsoft has been
//! seen to claim success for a mismatched token and fail the next command). Each step is timed,
//! and a failure is classified ([`Trouble`]) and said in plain language.
//!
//! Used by `mailoauth test ACCOUNT` ([`attempt`]) and by `mailoauth TOKENFILE --test`
//! ([`check_all`]). These are hand-written clients rather than the proxy's upstream cores: a
//! test must force a mechanism, see the capabilities and time each step, which the cores (built
//! to splice a client's session) do not expose. The token never travels in clear: without TLS
//! nothing but the capability and STARTTLS commands is sent.

mod imap;
mod pop3;
mod smtp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokenlib::sasl::{Mechanism, decode_error_challenge};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::Upstream;

/// How long any single step may take.
const STEP: Duration = Duration::from_secs(20);
/// Longest server line we accept.
const MAX_LINE: usize = 64 * 1024;

/// The three protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP",
            Protocol::Smtp => "SMTP",
        }
    }

    /// The harmless command run after the login.
    pub fn command(self) -> &'static str {
        match self {
            Protocol::Imap => "LIST",
            Protocol::Pop3 => "STAT",
            Protocol::Smtp => "NOOP",
        }
    }
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub server: Upstream,
    /// Plaintext is acceptable when STARTTLS is not offered: only for the local proxy's
    /// `tls = "none"` listener, with the local password, never with a token.
    pub plaintext_ok: bool,
}

/// How to log in.
pub enum Login<'a> {
    /// OAuth with this mechanism, or (`None`) OAUTHBEARER if offered, else XOAUTH2.
    OAuth {
        user: &'a str,
        token: &'a SecretString,
        mechanism: Option<Mechanism>,
    },
    /// A password (the local proxy): IMAP LOGIN, SMTP AUTH PLAIN, POP3 USER/PASS.
    Password {
        user: &'a str,
        password: &'a SecretString,
    },
}

/// The timed steps of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// TCP connect, TLS handshake (after STARTTLS for a plaintext port), greeting.
    Connect,
    Capabilities,
    Auth,
    /// The harmless command after the login.
    Command,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect+TLS",
            Step::Capabilities => "capabilities",
            Step::Auth => "auth",
            Step::Command => "command",
        }
    }
}

/// What kind of failure, so a caller can pick an exit code and a next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// No connection, a timeout, a closed connection: the network or the server is down.
    Unreachable,
    /// The TLS handshake failed (an untrusted certificate, most often).
    Tls,
    /// STARTTLS is not offered, or refused, on a plaintext port.
    NoStartTls,
    /// The server offers no usable login mechanism.
    NoMechanism,
    /// The login was refused.
    Refused,
    /// Microsoft's `535 5.7.139`: SMTP AUTH is disabled for the mailbox or tenant.
    SmtpAuthDisabled,
    /// The proxy says the account must be authorized again (`AUTHORIZATIONFAILED`).
    NeedsAuthorization,
    /// A passing refusal (`454`, `[UNAVAILABLE]`, `[SYS/TEMP]`).
    Temporary,
    /// The login was accepted, then the harmless command failed.
    CommandRefused,
    /// An answer the protocol does not allow here (greeting, data after STARTTLS…).
    Protocol,
}

/// One failure, in plain language.
#[derive(Debug, Clone)]
pub struct Problem {
    pub trouble: Trouble,
    /// The step that failed.
    pub step: Step,
    pub text: String,
}

/// What happened in one connection.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub protocol: Protocol,
    pub server: Upstream,
    /// The capabilities as listed over TLS (IMAP CAPABILITY, POP3 CAPA lines, EHLO keywords).
    pub capabilities: Vec<String>,
    /// The OAuth mechanisms among them, in preference order.
    pub offered: Vec<Mechanism>,
    /// How the login was made: `OAUTHBEARER`, `XOAUTH2`, `LOGIN`, `AUTH PLAIN`, `USER/PASS`.
    pub login: Option<&'static str>,
    /// The completed steps and how long each took.
    pub timings: Vec<(Step, Duration)>,
    pub outcome: Result<(), Problem>,
}

/// Connects to `endpoint` and checks one login; never fails, the result says what happened.
pub async fn attempt(
    protocol: Protocol,
    endpoint: &Endpoint,
    login: &Login<'_>,
    tls: Arc<rustls::ClientConfig>,
) -> Attempt {
    let mut rec = Record {
        attempt: Attempt {
            protocol,
            server: endpoint.server.clone(),
            capabilities: Vec::new(),
            offered: Vec::new(),
            login: None,
            timings: Vec::new(),
            outcome: Ok(()),
        },
        step: Step::Connect,
        mark: Instant::now(),
    };
    let result = match connect(&endpoint.server).await {
        Err(text) => Err(Fail(Trouble::Unreachable, text)),
        Ok(stream) => {
            let mut s = Session {
                endpoint,
                login,
                tls,
                rec: &mut rec,
            };
            match protocol {
                Protocol::Imap => imap::run(&mut s, stream).await,
                Protocol::Pop3 => pop3::run(&mut s, stream).await,
                Protocol::Smtp => smtp::run(&mut s, stream).await,
            }
        }
    };
    let step = rec.step;
    rec.attempt.outcome = result.map_err(|Fail(trouble, text)| Problem {
        trouble,
        step,
        text,
    });
    rec.attempt
}

/// The result of one protocol's check (`TOKENFILE --test`).
#[derive(Debug)]
pub struct Check {
    pub protocol: Protocol,
    pub upstream: Upstream,
    /// The mechanism used on success; the plain-language reason on failure.
    pub outcome: Result<Mechanism, String>,
    pub elapsed: Duration,
}

/// Checks each `(protocol, upstream)` with `token` for `user`, one after the other, with the
/// preferred mechanism.
pub async fn check_all(
    targets: &[(Protocol, Upstream)],
    user: &str,
    token: &SecretString,
    tls: Arc<rustls::ClientConfig>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (protocol, upstream) in targets {
        let started = Instant::now();
        let endpoint = Endpoint {
            server: upstream.clone(),
            plaintext_ok: false,
        };
        let login = Login::OAuth {
            user,
            token,
            mechanism: None,
        };
        let a = attempt(*protocol, &endpoint, &login, tls.clone()).await;
        let outcome = match a.outcome {
            Ok(()) => Ok(a
                .offered
                .iter()
                .copied()
                .find(|m| Some(m.name()) == a.login)
                .unwrap_or(Mechanism::XOAuth2)),
            Err(p) => Err(p.text),
        };
        checks.push(Check {
            protocol: *protocol,
            upstream: upstream.clone(),
            outcome,
            elapsed: started.elapsed(),
        });
    }
    checks
}

/// A failure inside a check, before the step is attached.
struct Fail(Trouble, String);

type Res<T> = Result<T, Fail>;

/// The attempt being filled in, and the clock of the current step.
struct Record {
    attempt: Attempt,
    step: Step,
    mark: Instant,
}

/// What a protocol check works with.
struct Session<'a, 'l> {
    endpoint: &'a Endpoint,
    login: &'a Login<'l>,
    tls: Arc<rustls::ClientConfig>,
    rec: &'a mut Record,
}

impl Session<'_, '_> {
    /// Ends the current step (recording its time) and starts `next`.
    fn done(&mut self, next: Step) {
        let now = Instant::now();
        let step = self.rec.step;
        self.rec
            .attempt
            .timings
            .push((step, now.duration_since(self.rec.mark)));
        self.rec.step = next;
        self.rec.mark = now;
    }

    /// Notes the capabilities and the OAuth mechanisms among `mechanisms`.
    fn capabilities(&mut self, caps: Vec<String>, mechanisms: &[String]) {
        let has = |m: &str| mechanisms.iter().any(|x| x.eq_ignore_ascii_case(m));
        self.rec.attempt.offered = [Mechanism::OAuthBearer, Mechanism::XOAuth2]
            .into_iter()
            .filter(|m| has(m.name()))
            .collect();
        self.rec.attempt.capabilities = caps;
    }

    /// The OAuth mechanism to use: the forced one if offered, else the preferred one offered.
    fn mechanism(&mut self) -> Res<Mechanism> {
        let Login::OAuth { mechanism, .. } = self.login else {
            unreachable!("only OAuth logins choose a mechanism");
        };
        let offered = &self.rec.attempt.offered;
        let chosen = match mechanism {
            Some(m) if offered.contains(m) => Some(*m),
            Some(m) => {
                return Err(Fail(
                    Trouble::NoMechanism,
                    format!("the server does not offer {}", m.name()),
                ));
            }
            None => offered.first().copied(),
        };
        let m = chosen.ok_or_else(|| {
            Fail(
                Trouble::NoMechanism,
                "the server offers neither OAUTHBEARER nor XOAUTH2 here, so it cannot take an OAuth token".into(),
            )
        })?;
        self.rec.attempt.login = Some(m.name());
        Ok(m)
    }

    /// TLS from the first byte.
    async fn tls(&self, stream: TcpStream) -> Res<Secure> {
        tls(stream, &self.endpoint.server, self.tls.clone()).await
    }

    /// Wraps a plaintext connection in TLS once the server agreed to STARTTLS. Bytes the server
    /// sent after its agreement would be injected plaintext: refuse them (CVE-2011-0411 class).
    async fn upgrade(&self, conn: Conn<TcpStream>) -> Res<Secure> {
        if !conn.io.buffer().is_empty() {
            return Err(Fail(
                Trouble::Protocol,
                "the server sent data right after agreeing to STARTTLS (a sign of tampering); stopped".into(),
            ));
        }
        self.tls(conn.io.into_inner()).await
    }

    /// What to do when STARTTLS is not offered: stop, unless plaintext is fine (local proxy).
    fn no_starttls(&self) -> Res<()> {
        if self.endpoint.plaintext_ok {
            Ok(())
        } else {
            Err(Fail(Trouble::NoStartTls, NO_STARTTLS.into()))
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A line-oriented connection over a plaintext or TLS stream.
struct Conn<S> {
    io: BufReader<S>,
}

type Secure = Conn<Box<dyn Stream>>;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            io: BufReader::new(stream),
        }
    }

    fn boxed(self) -> Secure
    where
        S: Send + 'static,
    {
        Conn {
            io: BufReader::new(Box::new(self.io.into_inner()) as Box<dyn Stream>),
        }
    }

    async fn line(&mut self) -> Res<String> {
        let mut buf = Vec::new();
        let n = timeout(
            STEP,
            (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf),
        )
        .await
        .map_err(|_| Fail(Trouble::Unreachable, "the server stopped answering".into()))?
        .map_err(|e| Fail(Trouble::Unreachable, format!("the connection failed: {e}")))?;
        if n == 0 {
            return Err(Fail(
                Trouble::Unreachable,
                "the server closed the connection".into(),
            ));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    async fn send(&mut self, line: &str) -> Res<()> {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        timeout(STEP, async {
            self.io.get_mut().write_all(&bytes).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| Fail(Trouble::Unreachable, "the server stopped reading".into()))?
        .map_err(|e| Fail(Trouble::Unreachable, format!("the connection failed: {e}")))
    }
}

async fn connect(upstream: &Upstream) -> Result<TcpStream, String> {
    let (host, port) = (upstream.host.as_str(), upstream.port);
    let stream = timeout(STEP, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("connecting to {host}:{port} timed out"))?
        .map_err(|e| format!("cannot connect to {host}:{port} ({e})"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn tls(
    stream: TcpStream,
    upstream: &Upstream,
    config: Arc<rustls::ClientConfig>,
) -> Res<Secure> {
    let name = rustls::pki_types::ServerName::try_from(upstream.host.clone()).map_err(|_| {
        Fail(
            Trouble::Tls,
            format!("{:?} is not a valid server name", upstream.host),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = timeout(STEP, connector.connect(name, stream))
        .await
        .map_err(|_| Fail(Trouble::Unreachable, "the TLS handshake timed out".into()))?
        .map_err(|e| Fail(Trouble::Tls, format!("TLS failed ({e}); if the server uses a private CA, set upstream_ca to its certificate")))?;
    Ok(Conn::new(Box::new(tls) as Box<dyn Stream>))
}

const NO_STARTTLS: &str = "the server does not offer STARTTLS on this port, so the token would travel unencrypted (or someone removed the offer); stopped before sending it. Use the implicit-TLS port (imaps://, pop3s://, smtps://) or check the server";

/// Plain words for a refused login: `answer` is the server's refusal, `challenge` the base64
/// error challenge before it, if any.
fn refused(s: &Session<'_, '_>, protocol: Protocol, answer: &str, challenge: Option<&str>) -> Fail {
    let upper = answer.to_ascii_uppercase();
    if let Login::Password { .. } = s.login {
        // The local proxy's answers (README, "What the client is told when a login fails").
        if upper.contains("AUTHORIZATIONFAILED") || answer.contains("mailoauth authorize") {
            return Fail(
                Trouble::NeedsAuthorization,
                format!("the proxy says the account must be authorized again: {answer}"),
            );
        }
        if upper.contains("[UNAVAILABLE]")
            || upper.contains("[SYS/TEMP]")
            || answer.starts_with('4')
        {
            return Fail(
                Trouble::Temporary,
                format!("the proxy could not log in upstream for now: {answer}"),
            );
        }
        return Fail(
            Trouble::Refused,
            format!(
                "the proxy refused the login: {answer}. Is the local password right (mailoauth passwd)? The proxy's log says more"
            ),
        );
    }
    if answer.contains("5.7.139") {
        return Fail(
            Trouble::SmtpAuthDisabled,
            format!(
                "the server refused the token: {answer}. SMTP AUTH is disabled for this Microsoft mailbox or tenant: an administrator has to enable Authenticated SMTP for the mailbox (Exchange admin center: the mailbox → Manage email apps → Authenticated SMTP), or for the tenant"
            ),
        );
    }
    if upper.contains("[UNAVAILABLE]")
        || upper.contains("[SYS/TEMP]")
        || (protocol == Protocol::Smtp && answer.starts_with('4'))
    {
        return Fail(
            Trouble::Temporary,
            format!("the server cannot log in anyone right now: {answer}"),
        );
    }
    let status = challenge
        .and_then(decode_error_challenge)
        .and_then(|c| c.status)
        .map(|s| format!(" (status {s})"))
        .unwrap_or_default();
    Fail(
        Trouble::Refused,
        format!(
            "the server rejected the token{status}: {answer}. Does the account allow {}? Is the token for this account and with the mail scope?",
            protocol.name()
        ),
    )
}

/// The login was accepted but the harmless command after it failed.
fn command_refused(protocol: Protocol, answer: &str) -> Fail {
    Fail(
        Trouble::CommandRefused,
        format!(
            "the login was accepted but {} failed right after it ({answer}): the server claimed a success it did not mean; the token may belong to another account, or the mailbox is not usable",
            protocol.command()
        ),
    )
}

/// The base64 SASL PLAIN response `\0user\0password` (RFC 4616).
fn plain_response(user: &str, password: &SecretString) -> String {
    use base64::Engine as _;
    use secrecy::ExposeSecret;
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose_secret().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&raw)
}

fn unexpected(what: &str, line: &str) -> Fail {
    Fail(Trouble::Protocol, format!("unexpected {what}: {line}"))
}

#[cfg(test)]
mod tests {
    use super::imap::imap_caps;
    use super::smtp::smtp_mechanisms;

    #[test]
    fn capability_parsing() {
        let caps =
            imap_caps(&["* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready".into()]).unwrap();
        assert_eq!(caps, ["IMAP4rev1", "SASL-IR", "AUTH=XOAUTH2"]);
        assert!(imap_caps(&["* OK ready".into()]).is_none());
        let mechs = smtp_mechanisms(&[
            "smtp.example".into(),
            "AUTH LOGIN XOAUTH2".into(),
            "AUTH=PLAIN".into(),
            "SIZE 1".into(),
        ]);
        assert_eq!(mechs, ["LOGIN", "XOAUTH2", "PLAIN"]);
    }
}
