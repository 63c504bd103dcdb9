//! Sans-IO handling of the authorization redirect: parsing the browser's HTTP request head on the
//! loopback listener, and what the user pastes in the paste flow (a whole URL or a bare code).
//! Both end in the same classification of the redirect's query (RFC 6749 §4.1.2).

use secrecy::SecretString;
use url::Url;

use super::pkce::constant_time_eq;

/// Largest request head the loopback listener reads; browsers send far less.
pub const MAX_HEAD: usize = 8 * 1024;

/// What a redirect (or a pasted answer) means.
#[derive(Debug)]
pub enum Redirect {
    /// The authorization code, with a matching `state`.
    Code(SecretString),
    /// The provider reported an error (`error=access_denied`…), with a matching `state`.
    Error {
        error: String,
        description: Option<String>,
    },
    /// A `state` that is not ours: not an answer to our request (or a forgery). Ignored.
    StateMismatch,
    /// A request for another path (favicon, probes). Answered 404.
    OtherPath,
    /// Our path but neither `code` nor `error`. Answered 400.
    NoCode,
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub target: String,
}

/// Parses an HTTP/1.x request head. `Ok(None)`: incomplete, read more. `Err`: not HTTP, or
/// longer than [`MAX_HEAD`] without ending.
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestLine>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD {
            Err("request head too long")
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "request head is not UTF-8")?;
    let line = head.lines().next().ok_or("empty request")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err("malformed request line");
    }
    Ok(Some(RequestLine {
        method: method.to_string(),
        target: target.to_string(),
    }))
}

/// Classifies a request target (`/path?query`) against the redirect path and our `state`.
pub fn classify_target(target: &str, expected_path: &str, state: &str) -> Redirect {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != expected_path {
        return Redirect::OtherPath;
    }
    classify_query(query, Some(state), true)
}

/// Classifies a redirect query. `state_required`: a loopback redirect must carry our state; a
/// pasted URL is checked when it has one.
fn classify_query(query: &str, state: Option<&str>, state_required: bool) -> Redirect {
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut got_state = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            _ => {}
        }
    }
    if code.is_none() && error.is_none() {
        return Redirect::NoCode;
    }
    match (state, got_state.as_deref()) {
        (Some(ours), Some(theirs)) if !constant_time_eq(ours, theirs) => {
            return Redirect::StateMismatch;
        }
        (Some(_), None) if state_required => return Redirect::StateMismatch,
        _ => {}
    }
    match (code, error) {
        (_, Some(error)) => Redirect::Error { error, description },
        (Some(code), None) if !code.is_empty() => Redirect::Code(SecretString::from(code)),
        _ => Redirect::NoCode,
    }
}

/// Interprets what a user pasted: the whole URL the browser ended on (its `state` is checked
/// when present), a bare query string, or the code alone.
pub fn classify_pasted(input: &str, state: &str) -> Redirect {
    let input = input.trim();
    if input.is_empty() {
        return Redirect::NoCode;
    }
    if let Ok(url) = Url::parse(input)
        && url.has_host()
    {
        return classify_query(url.query().unwrap_or(""), Some(state), false);
    }
    if input.contains("code=") || input.contains("error=") {
        return classify_query(input.trim_start_matches('?'), Some(state), false);
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Redirect::NoCode;
    }
    Redirect::Code(SecretString::from(input.to_string()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn code(r: Redirect) -> String {
        match r {
            Redirect::Code(c) => c.expose_secret().to_string(),
            other => panic!("expected a code, got {other:?}"),
        }
    }

    #[test]
    fn request_heads() {
        assert_eq!(
            parse_head(b"GET /?code=1 HTTP/1.1\r\nHost: x").unwrap(),
            None
        );
        let line = parse_head(b"GET /cb?code=1&state=s HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            line,
            RequestLine {
                method: "GET".into(),
                target: "/cb?code=1&state=s".into()
            }
        );
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"GET http://evil/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD]).is_err());
    }

    #[test]
    fn loopback_targets() {
        assert_eq!(
            code(classify_target("/?code=abc&state=S1", "/", "S1")),
            "abc"
        );
        assert_eq!(
            code(classify_target("/?state=S1&code=a%2Fb&scope=x", "/", "S1")),
            "a/b"
        );
        assert!(matches!(
            classify_target("/?code=abc&state=WRONG", "/", "S1"),
            Redirect::StateMismatch
        ));
        assert!(matches!(
            classify_target("/?code=abc", "/", "S1"),
            Redirect::StateMismatch
        ));
        assert!(matches!(
            classify_target("/favicon.ico", "/", "S1"),
            Redirect::OtherPath
        ));
        assert!(matches!(classify_target("/", "/", "S1"), Redirect::NoCode));
        match classify_target(
            "/?error=access_denied&error_description=no%20way&state=S1",
            "/",
            "S1",
        ) {
            Redirect::Error { error, description } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("no way"));
            }
            other => panic!("{other:?}"),
        }
        // A forged error with a wrong state is not believed either.
        assert!(matches!(
            classify_target("/?error=access_denied&state=X", "/", "S1"),
            Redirect::StateMismatch
        ));
    }

    #[test]
    fn pasted_answers() {
        assert_eq!(
            code(classify_pasted(
                "http://127.0.0.1/?code=4/0Ab&state=S1&scope=m\n",
                "S1"
            )),
            "4/0Ab"
        );
        assert_eq!(code(classify_pasted("  4/0AbCd-Ef  ", "S1")), "4/0AbCd-Ef");
        assert_eq!(
            code(classify_pasted("http://localhost/?code=xyz", "S1")),
            "xyz"
        );
        assert_eq!(code(classify_pasted("?code=xyz&state=S1", "S1")), "xyz");
        assert!(matches!(
            classify_pasted("http://localhost/?code=xyz&state=BAD", "S1"),
            Redirect::StateMismatch
        ));
        assert!(matches!(classify_pasted("", "S1"), Redirect::NoCode));
        assert!(matches!(
            classify_pasted("two words", "S1"),
            Redirect::NoCode
        ));
        assert!(matches!(
            classify_pasted("http://localhost/?state=S1", "S1"),
            Redirect::NoCode
        ));
        assert!(matches!(
            classify_pasted("http://localhost/?error=access_denied&state=S1", "S1"),
            Redirect::Error { .. }
        ));
    }
}
