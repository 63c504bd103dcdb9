//! The loopback listener's HTTP request-head parser, fed whatever a local process (or a browser)
//! sends to the redirect port.
//!
//! Contract: never panics; `Ok(Some(line))` only for a complete head (the input holds
//! `\r\n\r\n`) whose request line has a non-empty method and an origin-form target (`/…`);
//! `Err` for an unfinished head only once it reached `MAX_HEAD`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenlib::flow::redirect::{MAX_HEAD, parse_head};

fuzz_target!(|data: &[u8]| {
    let complete = data.windows(4).any(|w| w == b"\r\n\r\n");
    match parse_head(data) {
        Ok(Some(line)) => {
            assert!(complete, "a request line from an unfinished head");
            assert!(line.target.starts_with('/'), "target {:?}", line.target);
            assert!(!line.method.is_empty());
            assert!(!line.method.contains(' ') && !line.target.contains(' '));
        }
        Ok(None) => {
            assert!(!complete, "a complete head reported as unfinished");
            assert!(data.len() < MAX_HEAD, "an endless head is never waited on");
        }
        Err(_) => assert!(complete || data.len() >= MAX_HEAD),
    }
});
