//! The SMTP check: greeting, EHLO (STARTTLS first on port 587), AUTH with the token (always after
//! the `334` prompt: a token exceeds SMTP's 512-octet command line) or AUTH PLAIN with a password,
//! then `NOOP`.

use secrecy::ExposeSecret;
use tokenlib::sasl::encoded_client_response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{
    Conn, Fail, Login, Protocol, Res, Session, Step, Trouble, command_refused, refused, unexpected,
};

const EHLO: &str = "EHLO [127.0.0.1]";

pub(super) async fn run(s: &mut Session<'_, '_>, stream: TcpStream) -> Res<()> {
    let (mut c, plain_ehlo) = if s.endpoint.server.implicit_tls {
        let mut c = s.tls(stream).await?;
        check_greeting(&mut c).await?;
        (c, None)
    } else {
        let mut plain = Conn::new(stream);
        check_greeting(&mut plain).await?;
        plain.send(EHLO).await?;
        let (code, ehlo) = reply(&mut plain).await?;
        if code != 250 {
            return Err(unexpected("answer to EHLO", &ehlo.join(" ")));
        }
        if keywords(&ehlo)
            .iter()
            .any(|k| k.eq_ignore_ascii_case("STARTTLS"))
        {
            plain.send("STARTTLS").await?;
            let (code, answer) = reply(&mut plain).await?;
            if code != 220 {
                return Err(Fail(
                    Trouble::NoStartTls,
                    format!(
                        "STARTTLS was refused ({}), so the token cannot be sent safely",
                        answer.join(" ")
                    ),
                ));
            }
            (s.upgrade(plain).await?, None)
        } else {
            s.no_starttls()?;
            (plain.boxed(), Some(ehlo))
        }
    };
    s.done(Step::Capabilities);
    let ehlo = match plain_ehlo {
        Some(ehlo) => ehlo,
        None => {
            // After TLS the earlier EHLO answer is void (RFC 3207 §4.2).
            c.send(EHLO).await?;
            let (code, ehlo) = reply(&mut c).await?;
            if code != 250 {
                return Err(unexpected("answer to EHLO", &ehlo.join(" ")));
            }
            ehlo
        }
    };
    let keywords = keywords(&ehlo);
    let mechanisms = smtp_mechanisms(&keywords);
    s.capabilities(keywords, &mechanisms);
    s.done(Step::Auth);
    match s.login {
        Login::OAuth { user, token, .. } => {
            let mech = s.mechanism()?;
            c.send(&format!("AUTH {}", mech.name())).await?;
            let (code, answer) = reply(&mut c).await?;
            if code != 334 {
                return Err(refused(s, Protocol::Smtp, &answer.join(" "), None));
            }
            let server = &s.endpoint.server;
            c.send(
                encoded_client_response(mech, user, Some((&server.host, server.port)), token)
                    .expose_secret(),
            )
            .await?;
            let mut challenge = None;
            loop {
                let (code, answer) = reply(&mut c).await?;
                match code {
                    235 => break,
                    334 => {
                        challenge = answer[0].get(4..).map(str::to_owned);
                        c.send(mech.error_ack()).await?;
                    }
                    _ => {
                        return Err(refused(
                            s,
                            Protocol::Smtp,
                            &answer.join(" "),
                            challenge.as_deref(),
                        ));
                    }
                }
            }
        }
        Login::Password { user, password } => {
            s.rec.attempt.login = Some("AUTH PLAIN");
            let payload = Zeroizing::new(super::plain_response(user, password));
            c.send(&Zeroizing::new(format!("AUTH PLAIN {}", payload.as_str())))
                .await?;
            let (code, answer) = reply(&mut c).await?;
            if code != 235 {
                return Err(refused(s, Protocol::Smtp, &answer.join(" "), None));
            }
        }
    }
    s.done(Step::Command);
    c.send("NOOP").await?;
    let (code, answer) = reply(&mut c).await?;
    if code != 250 {
        return Err(command_refused(Protocol::Smtp, &answer.join(" ")));
    }
    s.done(Step::Command);
    let _ = c.send("QUIT").await;
    Ok(())
}

async fn check_greeting<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> Res<()> {
    let (code, g) = reply(c).await?;
    match code {
        220 => Ok(()),
        421 | 554 => Err(Fail(
            Trouble::Temporary,
            format!("the server turned the connection away: {}", g.join(" ")),
        )),
        _ => Err(unexpected("greeting", &g.join(" "))),
    }
}

/// Reads a (multi-line) reply; returns its code and lines.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> Res<(u16, Vec<String>)> {
    let mut lines = Vec::new();
    loop {
        let line = c.line().await?;
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| unexpected("line (not an SMTP reply)", &line))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok((code, lines));
        }
    }
}

/// The keywords of an EHLO reply (the lines after the first, without `250-`).
fn keywords(ehlo: &[String]) -> Vec<String> {
    ehlo.iter()
        .skip(1)
        .filter_map(|l| l.get(4..).map(str::to_owned))
        .collect()
}

/// The SASL mechanisms among EHLO keywords (`AUTH a b` and the old `AUTH=a b` form).
pub(super) fn smtp_mechanisms(keywords: &[String]) -> Vec<String> {
    keywords
        .iter()
        .filter_map(|k| {
            let kw = k.to_ascii_uppercase();
            kw.strip_prefix("AUTH ")
                .or_else(|| kw.strip_prefix("AUTH="))
                .map(|r| r.to_string())
        })
        .flat_map(|r| r.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}
