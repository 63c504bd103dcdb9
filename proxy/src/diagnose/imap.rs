//! The IMAP check: greeting, CAPABILITY (STARTTLS first on port 143), AUTHENTICATE with the
//! token (SASL-IR when offered) or LOGIN with a password, then `LIST "" ""`.

use secrecy::ExposeSecret;
use tokenlib::sasl::encoded_client_response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{
    Conn, Fail, Login, Protocol, Res, Session, Step, Trouble, command_refused, refused, unexpected,
};

pub(super) async fn run(s: &mut Session<'_, '_>, stream: TcpStream) -> Res<()> {
    let (mut c, greeting) = if s.endpoint.server.implicit_tls {
        let mut c = s.tls(stream).await?;
        let g = c.line().await?;
        (c, Some(g))
    } else {
        let mut plain = Conn::new(stream);
        let g = plain.line().await?;
        check_greeting(&g)?;
        let caps = capabilities(&mut plain, Some(&g)).await?;
        if has(&caps, "STARTTLS") {
            plain.send("s1 STARTTLS").await?;
            let (_, done) = tagged(&mut plain, "s1").await?;
            if !is_ok(&done, "s1") {
                return Err(Fail(
                    Trouble::NoStartTls,
                    format!("STARTTLS was refused ({done}), so the token cannot be sent safely"),
                ));
            }
            // After TLS the earlier capabilities are forgotten (RFC 9051 §6.2.1).
            (s.upgrade(plain).await?, None)
        } else {
            s.no_starttls()?;
            (plain.boxed(), Some(g))
        }
    };
    if let Some(g) = &greeting {
        check_greeting(g)?;
    }
    s.done(Step::Capabilities);
    let caps = capabilities(&mut c, greeting.as_deref()).await?;
    let mechanisms: Vec<String> = caps
        .iter()
        .filter_map(|c| {
            c.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .map(|_| c[5..].to_string())
        })
        .collect();
    s.capabilities(caps.clone(), &mechanisms);
    s.done(Step::Auth);
    match s.login {
        Login::OAuth { user, token, .. } => {
            let mech = s.mechanism()?;
            let server = &s.endpoint.server;
            let payload =
                encoded_client_response(mech, user, Some((&server.host, server.port)), token);
            if has(&caps, "SASL-IR") {
                c.send(&Zeroizing::new(format!(
                    "a1 AUTHENTICATE {} {}",
                    mech.name(),
                    payload.expose_secret()
                )))
                .await?;
            } else {
                c.send(&format!("a1 AUTHENTICATE {}", mech.name())).await?;
                let cont = c.line().await?;
                if !cont.starts_with('+') {
                    return Err(refused(s, Protocol::Imap, strip_tag(&cont), None));
                }
                c.send(payload.expose_secret()).await?;
            }
            let mut challenge = None;
            loop {
                let line = c.line().await?;
                if let Some(rest) = line.strip_prefix('+') {
                    // An error report as a challenge: it must be answered before the final NO.
                    challenge = Some(rest.trim().to_string());
                    c.send(mech.error_ack()).await?;
                } else if is_ok(&line, "a1") {
                    break;
                } else if is_tagged(&line, "a1") {
                    return Err(refused(
                        s,
                        Protocol::Imap,
                        strip_tag(&line),
                        challenge.as_deref(),
                    ));
                }
            }
        }
        Login::Password { user, password } => {
            let pw = password.expose_secret();
            if quotable(user) && quotable(pw) {
                s.rec.attempt.login = Some("LOGIN");
                c.send(&Zeroizing::new(format!(
                    "a1 LOGIN {} {}",
                    quote(user),
                    quote(pw)
                )))
                .await?;
            } else {
                s.rec.attempt.login = Some("AUTHENTICATE PLAIN");
                let payload = Zeroizing::new(super::plain_response(user, password));
                c.send("a1 AUTHENTICATE PLAIN").await?;
                let cont = c.line().await?;
                if !cont.starts_with('+') {
                    return Err(refused(s, Protocol::Imap, strip_tag(&cont), None));
                }
                c.send(&payload).await?;
            }
            let (_, done) = tagged(&mut c, "a1").await?;
            if !is_ok(&done, "a1") {
                return Err(refused(s, Protocol::Imap, strip_tag(&done), None));
            }
        }
    }
    s.done(Step::Command);
    c.send("a2 LIST \"\" \"\"").await?;
    let (_, done) = tagged(&mut c, "a2").await?;
    if !is_ok(&done, "a2") {
        return Err(command_refused(Protocol::Imap, strip_tag(&done)));
    }
    s.done(Step::Command);
    let _ = c.send("a3 LOGOUT").await;
    Ok(())
}

fn check_greeting(g: &str) -> Res<()> {
    let upper = g.to_ascii_uppercase();
    if upper.starts_with("* OK") {
        Ok(())
    } else if upper.starts_with("* BYE") {
        Err(Fail(
            Trouble::Temporary,
            format!("the server turned the connection away: {g}"),
        ))
    } else {
        Err(unexpected("greeting", g))
    }
}

fn has(caps: &[String], cap: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
}

fn is_tagged(line: &str, tag: &str) -> bool {
    line.get(..tag.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{tag} ")))
}

fn is_ok(line: &str, tag: &str) -> bool {
    is_tagged(line, tag)
        && line[tag.len() + 1..]
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case("OK ") || w.eq_ignore_ascii_case("OK"))
}

/// The answer without its tag: `NO [AUTHENTICATIONFAILED] …`.
fn strip_tag(line: &str) -> &str {
    line.split_once(' ').map(|(_, rest)| rest).unwrap_or(line)
}

/// Reads until the tagged completion; returns (untagged lines, tagged line).
async fn tagged<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    tag: &str,
) -> Res<(Vec<String>, String)> {
    let mut untagged = Vec::new();
    loop {
        let line = c.line().await?;
        if is_tagged(&line, tag) {
            return Ok((untagged, line));
        }
        untagged.push(line);
    }
}

/// IMAP capabilities from a `* CAPABILITY …` line or an `[CAPABILITY …]` response code, as the
/// server spelled them.
pub(super) fn imap_caps(lines: &[String]) -> Option<Vec<String>> {
    for line in lines {
        let upper = line.to_ascii_uppercase();
        let rest = if upper.starts_with("* CAPABILITY ") {
            &line[13..]
        } else if let Some(i) = upper.find("[CAPABILITY ") {
            line[i + 12..].split(']').next().unwrap_or("")
        } else {
            continue;
        };
        return Some(rest.split_whitespace().map(str::to_owned).collect());
    }
    None
}

async fn capabilities<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    greeting: Option<&str>,
) -> Res<Vec<String>> {
    if let Some(caps) = greeting.and_then(|g| imap_caps(&[g.to_string()])) {
        return Ok(caps);
    }
    c.send("c1 CAPABILITY").await?;
    let (untagged, done) = tagged(c, "c1").await?;
    imap_caps(&untagged).ok_or_else(|| unexpected("answer to CAPABILITY", &done))
}

/// Whether `s` fits an IMAP quoted string as this client writes it (printable ASCII).
fn quotable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
