//! Classification of a redirect: the loopback listener's request target and what a user pastes
//! in the paste flow. The input is `target NUL expected_path NUL state` (lossy UTF-8); the first
//! part is also classified as a pasted answer against the same state.
//!
//! Contract: never panics, and never hands out a code (or believes an error) that came with a
//! `state` other than ours. Independently of tokenlib's own logic, the target re-parses the query
//! with `url::form_urlencoded` and checks:
//! - `classify_target`: `Code`/`Error` only for the expected path and when the query's last
//!   `state` equals ours (a loopback redirect must carry it); `OtherPath` only for another path.
//! - `classify_pasted`: a `Code` is either the whole (trimmed) input, without whitespace, when it
//!   was a bare code, or comes from a query whose last `state` is absent or ours.

#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use tokenlib::flow::redirect::{Redirect, classify_pasted, classify_target};
use url::Url;

/// The last value of `key` in a query, as `classify_query` reads it (later pairs win).
fn last(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .last()
        .map(|(_, v)| v.into_owned())
}

fn check_target(target: &str, expected_path: &str, state: &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match classify_target(target, expected_path, state) {
        Redirect::OtherPath => assert_ne!(path, expected_path),
        Redirect::Code(code) => {
            assert_eq!(path, expected_path);
            assert!(!code.expose_secret().is_empty());
            assert_eq!(last(query, "code").as_deref(), Some(code.expose_secret()));
            assert_eq!(
                last(query, "state").as_deref(),
                Some(state),
                "code with a foreign state"
            );
        }
        Redirect::Error { error, .. } => {
            assert_eq!(path, expected_path);
            assert_eq!(last(query, "error"), Some(error));
            assert_eq!(
                last(query, "state").as_deref(),
                Some(state),
                "error with a foreign state"
            );
        }
        Redirect::StateMismatch | Redirect::NoCode => assert_eq!(path, expected_path),
    }
}

fn check_pasted(input: &str, state: &str) {
    let Redirect::Code(code) = classify_pasted(input, state) else {
        return;
    };
    let code = code.expose_secret();
    assert!(!code.is_empty());
    let trimmed = input.trim();
    if code == trimmed && !code.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // A bare code (or a query that happens to equal one: both are fine).
        return;
    }
    let query = match Url::parse(trimmed) {
        Ok(url) if url.has_host() => url.query().unwrap_or("").to_string(),
        _ => trimmed.trim_start_matches('?').to_string(),
    };
    assert_eq!(last(&query, "code").as_deref(), Some(code));
    if let Some(theirs) = last(&query, "state") {
        assert_eq!(theirs, state, "pasted code with a foreign state");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let target = parts.next().unwrap_or("");
    let expected_path = parts.next().unwrap_or("/");
    let state = parts.next().unwrap_or("S1");
    check_target(target, expected_path, state);
    check_pasted(target, state);
});
