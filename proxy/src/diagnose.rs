//! Login checks against an account's real mail servers with its access token: connect (implicit
//! TLS, or STARTTLS that must be offered), read the capabilities, authenticate with OAUTHBEARER
//! if offered, else XOAUTH2, and run one harmless command after it (IMAP `LIST`, POP3 `STAT`,
//! SMTP `NOOP`: Microsoft has been seen to claim success for a mismatched token and fail the
//! next command). Used by `mailoauth TOKENFILE --test`; each failure is said in plain language.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokenlib::sasl::{Mechanism, decode_error_challenge, encoded_client_response};
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
}

/// The result of one protocol's check.
#[derive(Debug)]
pub struct Check {
    pub protocol: Protocol,
    pub upstream: Upstream,
    /// The mechanism used on success; the plain-language reason on failure.
    pub outcome: Result<Mechanism, String>,
    pub elapsed: Duration,
}

/// Checks each `(protocol, upstream)` with `token` for `user`, one after the other.
pub async fn check_all(
    targets: &[(Protocol, Upstream)],
    user: &str,
    token: &SecretString,
    tls: Arc<rustls::ClientConfig>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (protocol, upstream) in targets {
        let started = Instant::now();
        let outcome = check(*protocol, upstream, user, token, tls.clone()).await;
        checks.push(Check {
            protocol: *protocol,
            upstream: upstream.clone(),
            outcome,
            elapsed: started.elapsed(),
        });
    }
    checks
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A line-oriented connection over a plaintext or TLS stream.
struct Conn<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            io: BufReader::new(stream),
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut buf = Vec::new();
        let n = timeout(
            STEP,
            (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf),
        )
        .await
        .map_err(|_| "the server stopped answering".to_string())?
        .map_err(|e| format!("the connection failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        timeout(STEP, async {
            self.io.get_mut().write_all(&bytes).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| "the server stopped reading".to_string())?
        .map_err(|e| format!("the connection failed: {e}"))
    }

    /// IMAP: reads until the tagged completion; returns (untagged lines, tagged line).
    async fn imap_tagged(&mut self, tag: &str) -> Result<(Vec<String>, String), String> {
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await?;
            if line.starts_with(&format!("{tag} ")) {
                return Ok((untagged, line));
            }
            untagged.push(line);
        }
    }

    /// SMTP: reads a (multi-line) reply; returns its code and lines.
    async fn smtp_reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok((code, lines));
            }
        }
    }
}

type Secure = Conn<Box<dyn Stream>>;

async fn connect(upstream: &Upstream) -> Result<TcpStream, String> {
    let stream = timeout(
        STEP,
        TcpStream::connect((upstream.host.as_str(), upstream.port)),
    )
    .await
    .map_err(|_| {
        format!(
            "connecting to {}:{} timed out",
            upstream.host, upstream.port
        )
    })?
    .map_err(|e| {
        format!(
            "cannot connect to {}:{} ({e})",
            upstream.host, upstream.port
        )
    })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn tls(
    stream: TcpStream,
    upstream: &Upstream,
    config: Arc<rustls::ClientConfig>,
) -> Result<Secure, String> {
    let name = rustls::pki_types::ServerName::try_from(upstream.host.clone())
        .map_err(|_| format!("{:?} is not a valid server name", upstream.host))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = timeout(STEP, connector.connect(name, stream))
        .await
        .map_err(|_| "the TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS failed ({e}); if the server uses a private CA, set upstream_ca to its certificate"))?;
    Ok(Conn::new(Box::new(tls) as Box<dyn Stream>))
}

/// Wraps a plaintext connection in TLS once the server agreed to STARTTLS. Bytes the server
/// sent after its agreement would be injected plaintext: refuse them (CVE-2011-0411 class).
async fn upgrade(
    conn: Conn<TcpStream>,
    upstream: &Upstream,
    config: Arc<rustls::ClientConfig>,
) -> Result<Secure, String> {
    if !conn.io.buffer().is_empty() {
        return Err(
            "the server sent data right after agreeing to STARTTLS (a sign of tampering); stopped"
                .into(),
        );
    }
    tls(conn.io.into_inner(), upstream, config).await
}

const NO_STARTTLS: &str = "the server does not offer STARTTLS on this port, so the token would travel unencrypted (or someone removed the offer); stopped before sending it. Use the implicit-TLS port (imaps://, pop3s://, smtps://) or check the server";

async fn check(
    protocol: Protocol,
    upstream: &Upstream,
    user: &str,
    token: &SecretString,
    config: Arc<rustls::ClientConfig>,
) -> Result<Mechanism, String> {
    let stream = connect(upstream).await?;
    match protocol {
        Protocol::Imap => imap(stream, upstream, user, token, config).await,
        Protocol::Pop3 => pop3(stream, upstream, user, token, config).await,
        Protocol::Smtp => smtp(stream, upstream, user, token, config).await,
    }
}

/// IMAP capabilities from a `* CAPABILITY …` line or an `[CAPABILITY …]` response code.
fn imap_caps(lines: &[String]) -> Option<Vec<String>> {
    for line in lines {
        let upper = line.to_ascii_uppercase();
        let rest = if let Some(r) = upper.strip_prefix("* CAPABILITY ") {
            r.to_string()
        } else if let Some(i) = upper.find("[CAPABILITY ") {
            upper[i + 12..].split(']').next().unwrap_or("").to_string()
        } else {
            continue;
        };
        return Some(rest.split_whitespace().map(str::to_owned).collect());
    }
    None
}

async fn imap_capabilities<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    greeting: Option<&str>,
) -> Result<Vec<String>, String> {
    if let Some(caps) = greeting.and_then(|g| imap_caps(&[g.to_string()])) {
        return Ok(caps);
    }
    c.send("c1 CAPABILITY").await?;
    let (untagged, done) = c.imap_tagged("c1").await?;
    imap_caps(&untagged).ok_or_else(|| format!("the server lists no capabilities ({done})"))
}

fn choose(offers_bearer: bool, offers_xoauth2: bool) -> Result<Mechanism, String> {
    match (offers_bearer, offers_xoauth2) {
        (true, _) => Ok(Mechanism::OAuthBearer),
        (false, true) => Ok(Mechanism::XOAuth2),
        _ => Err("the server offers neither OAUTHBEARER nor XOAUTH2 here, so it cannot take an OAuth token".into()),
    }
}

/// Plain words for a rejected token.
fn rejected(protocol: Protocol, answer: &str, challenge: Option<&str>) -> String {
    let status = challenge
        .and_then(decode_error_challenge)
        .and_then(|c| c.status)
        .map(|s| format!(" (status {s})"))
        .unwrap_or_default();
    let mut text = format!("the server rejected the token{status}: {answer}");
    if answer.contains("5.7.139") {
        text.push_str(". SMTP AUTH is disabled for this Microsoft mailbox or tenant: an administrator has to enable Authenticated SMTP");
    } else {
        text.push_str(&format!(
            ". Does the account allow {}? Is the token for this account and with the mail scope?",
            protocol.name()
        ));
    }
    text
}

async fn imap(
    stream: TcpStream,
    upstream: &Upstream,
    user: &str,
    token: &SecretString,
    config: Arc<rustls::ClientConfig>,
) -> Result<Mechanism, String> {
    let (mut c, greeting) = if upstream.implicit_tls {
        let mut c = tls(stream, upstream, config).await?;
        let g = c.line().await?;
        (c, g)
    } else {
        let mut plain = Conn::new(stream);
        let g = plain.line().await?;
        let caps = imap_capabilities(&mut plain, Some(&g)).await?;
        if !caps.iter().any(|c| c == "STARTTLS") {
            return Err(NO_STARTTLS.into());
        }
        plain.send("s1 STARTTLS").await?;
        let (_, done) = plain.imap_tagged("s1").await?;
        if !done.to_ascii_uppercase().starts_with("S1 OK") {
            return Err(format!("STARTTLS was refused: {done}"));
        }
        // After TLS the earlier capabilities are forgotten (RFC 9051 §6.2.1).
        (upgrade(plain, upstream, config).await?, String::new())
    };
    if greeting.starts_with("* BYE") || greeting.starts_with("* PREAUTH") {
        return Err(format!("unexpected greeting: {greeting}"));
    }
    let greeting = (!greeting.is_empty()).then_some(greeting);
    let caps = imap_capabilities(&mut c, greeting.as_deref()).await?;
    let mech = choose(
        caps.iter().any(|c| c == "AUTH=OAUTHBEARER"),
        caps.iter().any(|c| c == "AUTH=XOAUTH2"),
    )?;
    let payload = encoded_client_response(mech, user, Some((&upstream.host, upstream.port)), token);
    if caps.iter().any(|c| c == "SASL-IR") {
        c.send(&format!(
            "a1 AUTHENTICATE {} {}",
            mech.name(),
            payload.expose_secret()
        ))
        .await?;
    } else {
        c.send(&format!("a1 AUTHENTICATE {}", mech.name())).await?;
        let cont = c.line().await?;
        if !cont.starts_with('+') {
            return Err(format!(
                "the server did not accept AUTHENTICATE {}: {cont}",
                mech.name()
            ));
        }
        c.send(payload.expose_secret()).await?;
    }
    let mut challenge = None;
    loop {
        let line = c.line().await?;
        if let Some(rest) = line.strip_prefix("+") {
            // An error report as a challenge: it must be answered before the final NO.
            challenge = Some(rest.trim().to_string());
            c.send(mech.error_ack()).await?;
        } else if line.to_ascii_uppercase().starts_with("A1 OK") {
            break;
        } else if line.starts_with("a1 ") || line.starts_with("A1 ") {
            return Err(rejected(Protocol::Imap, &line[3..], challenge.as_deref()));
        }
    }
    c.send("a2 LIST \"\" \"*\"").await?;
    let (_, done) = c.imap_tagged("a2").await?;
    if !done.to_ascii_uppercase().starts_with("A2 OK") {
        return Err(format!(
            "login was accepted but the next command failed ({done}); the token may belong to another account"
        ));
    }
    let _ = c.send("a3 LOGOUT").await;
    Ok(mech)
}

async fn pop3(
    stream: TcpStream,
    upstream: &Upstream,
    user: &str,
    token: &SecretString,
    config: Arc<rustls::ClientConfig>,
) -> Result<Mechanism, String> {
    let mut c = if upstream.implicit_tls {
        let mut c = tls(stream, upstream, config).await?;
        let g = c.line().await?;
        if !g.starts_with("+OK") {
            return Err(format!("unexpected greeting: {g}"));
        }
        c
    } else {
        let mut plain = Conn::new(stream);
        let g = plain.line().await?;
        if !g.starts_with("+OK") {
            return Err(format!("unexpected greeting: {g}"));
        }
        plain.send("STLS").await?;
        let answer = plain.line().await?;
        if !answer.starts_with("+OK") {
            return Err(NO_STARTTLS.into());
        }
        upgrade(plain, upstream, config).await?
    };
    c.send("CAPA").await?;
    let mut sasl = Vec::new();
    if c.line().await?.starts_with("+OK") {
        loop {
            let line = c.line().await?;
            if line == "." {
                break;
            }
            if let Some(rest) = line.to_ascii_uppercase().strip_prefix("SASL ") {
                sasl.extend(rest.split_whitespace().map(str::to_owned));
            }
        }
    }
    let mech = choose(
        sasl.iter().any(|m| m == "OAUTHBEARER"),
        sasl.iter().any(|m| m == "XOAUTH2"),
    )?;
    // Without an initial response: a token makes the AUTH line exceed POP3's 255-octet limit.
    c.send(&format!("AUTH {}", mech.name())).await?;
    let cont = c.line().await?;
    if !cont.starts_with('+') || cont.starts_with("+OK") {
        return Err(format!(
            "the server did not accept AUTH {}: {cont}",
            mech.name()
        ));
    }
    c.send(
        encoded_client_response(mech, user, Some((&upstream.host, upstream.port)), token)
            .expose_secret(),
    )
    .await?;
    let mut challenge = None;
    loop {
        let line = c.line().await?;
        if line.starts_with("+OK") {
            break;
        } else if let Some(rest) = line.strip_prefix('+') {
            challenge = Some(rest.trim().to_string());
            c.send(mech.error_ack()).await?;
        } else {
            return Err(rejected(Protocol::Pop3, &line, challenge.as_deref()));
        }
    }
    c.send("STAT").await?;
    let stat = c.line().await?;
    if !stat.starts_with("+OK") {
        return Err(format!("login was accepted but STAT failed ({stat})"));
    }
    let _ = c.send("QUIT").await;
    Ok(mech)
}

/// The SASL mechanisms of an EHLO reply (`AUTH a b` and the old `AUTH=a b` form).
fn smtp_mechanisms(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let kw = l.get(4..)?.to_ascii_uppercase();
            kw.strip_prefix("AUTH ")
                .or_else(|| kw.strip_prefix("AUTH="))
                .map(|r| r.to_string())
        })
        .flat_map(|r| r.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

async fn smtp(
    stream: TcpStream,
    upstream: &Upstream,
    user: &str,
    token: &SecretString,
    config: Arc<rustls::ClientConfig>,
) -> Result<Mechanism, String> {
    const EHLO: &str = "EHLO [127.0.0.1]";
    let mut c = if upstream.implicit_tls {
        let mut c = tls(stream, upstream, config).await?;
        let (code, g) = c.smtp_reply().await?;
        if code != 220 {
            return Err(format!("unexpected greeting: {}", g.join(" ")));
        }
        c
    } else {
        let mut plain = Conn::new(stream);
        let (code, g) = plain.smtp_reply().await?;
        if code != 220 {
            return Err(format!("unexpected greeting: {}", g.join(" ")));
        }
        plain.send(EHLO).await?;
        let (_, ehlo) = plain.smtp_reply().await?;
        if !ehlo.iter().any(|l| {
            l.get(4..)
                .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
        }) {
            return Err(NO_STARTTLS.into());
        }
        plain.send("STARTTLS").await?;
        let (code, answer) = plain.smtp_reply().await?;
        if code != 220 {
            return Err(format!("STARTTLS was refused: {}", answer.join(" ")));
        }
        upgrade(plain, upstream, config).await?
    };
    c.send(EHLO).await?;
    let (code, ehlo) = c.smtp_reply().await?;
    if code != 250 {
        return Err(format!("EHLO was refused: {}", ehlo.join(" ")));
    }
    let mechs = smtp_mechanisms(&ehlo);
    let mech = choose(
        mechs.iter().any(|m| m == "OAUTHBEARER"),
        mechs.iter().any(|m| m == "XOAUTH2"),
    )?;
    // Without an initial response: a token would exceed SMTP's 512-octet command line.
    c.send(&format!("AUTH {}", mech.name())).await?;
    let (code, answer) = c.smtp_reply().await?;
    if code != 334 {
        return Err(format!(
            "the server did not accept AUTH {}: {}",
            mech.name(),
            answer.join(" ")
        ));
    }
    c.send(
        encoded_client_response(mech, user, Some((&upstream.host, upstream.port)), token)
            .expose_secret(),
    )
    .await?;
    let mut challenge = None;
    loop {
        let (code, answer) = c.smtp_reply().await?;
        match code {
            235 => break,
            334 => {
                challenge = answer[0].get(4..).map(str::to_owned);
                c.send(mech.error_ack()).await?;
            }
            _ => {
                return Err(rejected(
                    Protocol::Smtp,
                    &answer.join(" "),
                    challenge.as_deref(),
                ));
            }
        }
    }
    c.send("NOOP").await?;
    let (code, answer) = c.smtp_reply().await?;
    if code != 250 {
        return Err(format!(
            "login was accepted but NOOP failed ({})",
            answer.join(" ")
        ));
    }
    let _ = c.send("QUIT").await;
    Ok(mech)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_parsing() {
        let caps =
            imap_caps(&["* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready".into()]).unwrap();
        assert_eq!(caps, ["IMAP4REV1", "SASL-IR", "AUTH=XOAUTH2"]);
        assert!(imap_caps(&["* OK ready".into()]).is_none());
        let mechs = smtp_mechanisms(&[
            "250-smtp.example".into(),
            "250-AUTH LOGIN XOAUTH2".into(),
            "250-AUTH=PLAIN".into(),
            "250 SIZE 1".into(),
        ]);
        assert_eq!(mechs, ["LOGIN", "XOAUTH2", "PLAIN"]);
        assert_eq!(choose(true, true).unwrap(), Mechanism::OAuthBearer);
        assert_eq!(choose(false, true).unwrap(), Mechanism::XOAuth2);
        assert!(choose(false, false).is_err());
    }
}
