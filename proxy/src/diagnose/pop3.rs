//! The POP3 check: greeting, STLS on port 110, CAPA, AUTH with the token (always after the `+`
//! prompt: a token exceeds POP3's 255-octet command line) or USER/PASS, then `STAT`.

use secrecy::ExposeSecret;
use tokenlib::sasl::encoded_client_response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{
    Conn, Fail, Login, Protocol, Res, Session, Step, Trouble, command_refused, refused, unexpected,
};

pub(super) async fn run(s: &mut Session<'_, '_>, stream: TcpStream) -> Res<()> {
    let mut c = if s.endpoint.server.implicit_tls {
        let mut c = s.tls(stream).await?;
        check_greeting(&c.line().await?)?;
        c
    } else {
        let mut plain = Conn::new(stream);
        check_greeting(&plain.line().await?)?;
        // Towards a server that must do TLS, STLS straight away (its refusal is the answer);
        // towards the local proxy, CAPA says whether it offers STLS at all.
        let offered = !s.endpoint.plaintext_ok
            || capa(&mut plain)
                .await?
                .iter()
                .any(|l| l.eq_ignore_ascii_case("STLS"));
        if offered {
            plain.send("STLS").await?;
            let answer = plain.line().await?;
            if !answer.starts_with("+OK") {
                return Err(Fail(
                    Trouble::NoStartTls,
                    format!(
                        "{} (the server answered STLS with: {answer})",
                        super::NO_STARTTLS
                    ),
                ));
            }
            s.upgrade(plain).await?
        } else {
            s.no_starttls()?;
            plain.boxed()
        }
    };
    s.done(Step::Capabilities);
    let caps = capa(&mut c).await?;
    let mechanisms: Vec<String> = caps
        .iter()
        .filter(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("SASL "))
        .flat_map(|l| {
            l[5..]
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    s.capabilities(caps, &mechanisms);
    s.done(Step::Auth);
    match s.login {
        Login::OAuth { user, token, .. } => {
            let mech = s.mechanism()?;
            c.send(&format!("AUTH {}", mech.name())).await?;
            let cont = c.line().await?;
            if !cont.starts_with('+') || cont.starts_with("+OK") {
                return Err(refused(s, Protocol::Pop3, &cont, None));
            }
            let server = &s.endpoint.server;
            c.send(
                encoded_client_response(mech, user, Some((&server.host, server.port)), token)
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
                    return Err(refused(s, Protocol::Pop3, &line, challenge.as_deref()));
                }
            }
        }
        Login::Password { user, password } => {
            s.rec.attempt.login = Some("USER/PASS");
            c.send(&format!("USER {user}")).await?;
            let answer = c.line().await?;
            if !answer.starts_with("+OK") {
                return Err(refused(s, Protocol::Pop3, &answer, None));
            }
            c.send(&Zeroizing::new(format!(
                "PASS {}",
                password.expose_secret()
            )))
            .await?;
            let answer = c.line().await?;
            if !answer.starts_with("+OK") {
                return Err(refused(s, Protocol::Pop3, &answer, None));
            }
        }
    }
    s.done(Step::Command);
    c.send("STAT").await?;
    let stat = c.line().await?;
    if !stat.starts_with("+OK") {
        return Err(command_refused(Protocol::Pop3, &stat));
    }
    s.done(Step::Command);
    let _ = c.send("QUIT").await;
    Ok(())
}

fn check_greeting(g: &str) -> Res<()> {
    if g.starts_with("+OK") {
        Ok(())
    } else if g.to_ascii_uppercase().contains("[SYS/TEMP]")
        || g.to_ascii_uppercase().contains("[IN-USE]")
    {
        Err(Fail(
            Trouble::Temporary,
            format!("the server turned the connection away: {g}"),
        ))
    } else {
        Err(unexpected("greeting", g))
    }
}

/// The CAPA lines (empty if the server does not know CAPA).
async fn capa<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) -> Res<Vec<String>> {
    c.send("CAPA").await?;
    let mut lines = Vec::new();
    if c.line().await?.starts_with("+OK") {
        loop {
            let line = c.line().await?;
            if line == "." {
                break;
            }
            lines.push(line);
        }
    }
    Ok(lines)
}
