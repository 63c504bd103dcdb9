//! The hyper side: accept loop, request parsing into [`Request`], failure injection, replies.

use std::io;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::endpoints::{self, Request};
use super::state::{Reply, State};
use super::{Failure, RequestRecord};
use crate::util::{form_decode, parse_form};

type Shared = Arc<Mutex<State>>;

/// Serves until `shutdown` fires.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    state: Shared,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("authserver: cannot use the listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decodes `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

async fn handle(
    state: Shared,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parse_form(parts.uri.query().unwrap_or("").as_bytes()),
        form: if is_form {
            parse_form(&body)
        } else {
            Vec::new()
        },
        basic: parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic),
    };

    let failure = {
        let mut st = lock(&state);
        st.log.push(RequestRecord {
            method: request.method.clone(),
            path: request.path.clone(),
            params: request
                .query
                .iter()
                .chain(request.form.iter())
                .cloned()
                .collect(),
            basic_client_id: request.basic.as_ref().map(|(id, _)| id.clone()),
        });
        if request.method == "POST" && request.path == "/token" {
            let grant_type = request
                .form
                .iter()
                .find(|(k, _)| k == "grant_type")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            *st.token_counts.entry(grant_type).or_default() += 1;
            st.failures.pop_front()
        } else {
            None
        }
    };
    match failure {
        Some(Failure::Delay(d)) => tokio::time::sleep(d).await,
        Some(Failure::Disconnect) => {
            return Err(io::Error::other("injected disconnect"));
        }
        Some(f) => return Ok(to_hyper(lock(&state).failure_reply(&f))),
        None => {}
    }
    let reply = endpoints::dispatch(&mut lock(&state), &request);
    Ok(to_hyper(reply))
}

fn to_hyper(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .expect("valid response parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aid:s%26cret"));
        assert_eq!(
            parse_basic(&header),
            Some(("my:id".to_string(), "s&cret".to_string()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
