//! The loopback redirect flow (RFC 8252 §7.3): a one-shot HTTP listener on 127.0.0.1 with an
//! OS-chosen port receives the browser's redirect; PKCE and `state` protect the code.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};

use super::redirect::{MAX_HEAD, Redirect, classify_target, parse_head};
use super::{AuthRequest, FlowError, FlowOptions, Prompter, redirect_uri};
use crate::account::{Account, FlowKind};
use crate::oauth::OAuthHttp;
use crate::provider::{Endpoints, is_loopback_host};
use crate::token::TokenSet;

/// How long one browser connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    http: &OAuthHttp,
    account: &Account,
    endpoints: &Endpoints,
    prompter: &dyn Prompter,
    options: &FlowOptions,
) -> Result<TokenSet, FlowError> {
    let (listeners, port) = bind(account).await?;
    let request = AuthRequest::new(redirect_uri(account, Some(port)));
    let url = request.url(account, endpoints)?;
    let path = request.redirect_uri.path().to_string();
    prompter.show_authorization_url(&url, options.open_browser);
    prompter.note(&format!(
        "Waiting for the browser on 127.0.0.1:{port} (up to {} s)…",
        options.timeout.as_secs()
    ));
    let code = wait_for_code(
        &listeners,
        &path,
        &request.state,
        Instant::now() + options.timeout,
    )
    .await?;
    request
        .exchange(http, account, endpoints, FlowKind::Loopback, &code)
        .await
}

/// Binds 127.0.0.1 on the configured port or one the OS picks; when the redirect names
/// `localhost`, also [::1] on the same port, since browsers may resolve localhost to IPv6 first.
async fn bind(account: &Account) -> Result<(Vec<TcpListener>, u16), FlowError> {
    let fixed = account.redirect_uri.as_ref();
    if let Some(uri) = fixed
        && (uri.scheme() != "http" || !is_loopback_host(uri))
    {
        return Err(FlowError::Config(format!(
            "redirect_uri {uri} is not an http:// loopback address, so the loopback flow cannot receive it; use flow = \"paste\" with it instead"
        )));
    }
    let wanted = fixed.and_then(|u| u.port()).unwrap_or(0);
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, wanted)))
        .await
        .map_err(|e| FlowError::Io {
            what: format!("cannot listen on 127.0.0.1:{wanted} for the browser's redirect"),
            source: e,
        })?;
    let port = v4
        .local_addr()
        .map_err(|e| FlowError::Io {
            what: "listener address".into(),
            source: e,
        })?
        .port();
    let mut listeners = vec![v4];
    let names_localhost = match fixed {
        Some(u) => u.host_str() == Some("localhost"),
        None => super::redirect_uri(account, None).host_str() == Some("localhost"),
    };
    if names_localhost
        && let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await
    {
        listeners.push(v6);
    }
    Ok((listeners, port))
}

/// Serves redirect requests until one carries our code (or an error), or the deadline passes.
async fn wait_for_code(
    listeners: &[TcpListener],
    path: &str,
    state: &str,
    deadline: Instant,
) -> Result<secrecy::SecretString, FlowError> {
    loop {
        let accepted = timeout_at(deadline, accept_any(listeners)).await.map_err(|_| {
            FlowError::TimedOut(
                "no answer from the browser in time. Open the URL again, or use --flow paste if the browser runs on another machine".into(),
            )
        })?;
        let Ok(mut stream) = accepted else { continue };
        let request_deadline = Instant::now() + REQUEST_TIMEOUT;
        let head = match timeout_at(request_deadline.min(deadline), read_head(&mut stream)).await {
            Ok(Ok(Some(line))) => line,
            _ => {
                let _ = respond(&mut stream, 400, "Bad request.").await;
                continue;
            }
        };
        if head.method != "GET" {
            let _ = respond(&mut stream, 405, "Only GET is served here.").await;
            continue;
        }
        match classify_target(&head.target, path, state) {
            Redirect::Code(code) => {
                let _ = respond(
                    &mut stream,
                    200,
                    "mailoauth received the authorization. You can close this tab.",
                )
                .await;
                return Ok(code);
            }
            Redirect::Error { error, description } => {
                let _ = respond(
                    &mut stream,
                    200,
                    "The authorization was not granted; see the terminal for what to do next.",
                )
                .await;
                return Err(FlowError::Denied { error, description });
            }
            Redirect::StateMismatch => {
                let _ = respond(
                    &mut stream,
                    400,
                    "This answer does not belong to the authorization mailoauth is waiting for.",
                )
                .await;
            }
            Redirect::OtherPath => {
                let _ = respond(&mut stream, 404, "Not found.").await;
            }
            Redirect::NoCode => {
                let _ = respond(
                    &mut stream,
                    400,
                    "This request carries no authorization code.",
                )
                .await;
            }
        }
    }
}

async fn accept_any(listeners: &[TcpListener]) -> std::io::Result<TcpStream> {
    match listeners {
        [one] => one.accept().await.map(|(s, _)| s),
        [a, b, ..] => tokio::select! {
            r = a.accept() => r.map(|(s, _)| s),
            r = b.accept() => r.map(|(s, _)| s),
        },
        [] => std::future::pending().await,
    }
}

async fn read_head(
    stream: &mut TcpStream,
) -> std::io::Result<Option<super::redirect::RequestLine>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(line)) => return Ok(Some(line)),
            Ok(None) if buf.len() < MAX_HEAD => continue,
            _ => return Ok(None),
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailoauth</title></head><body><p>{message}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
