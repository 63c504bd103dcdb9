//! An OAuth error object (RFC 6749 §5.2) from a token or device endpoint. The first two bytes are
//! the HTTP status (big-endian), the rest is the body.
//!
//! Contract: never panics, also when the error is shown (`Display` keeps the description's
//! first line) or classified.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenlib::oauth::parse_provider_error;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body),
        _ => return,
    };
    let Some(error) = parse_provider_error(status, body) else {
        return;
    };
    assert_eq!(error.http_status, status);
    let shown = error.to_string();
    assert!(shown.starts_with(error.error.as_str()));
    let _ = (error.needs_reauthorization(), error.is_transient());
});
