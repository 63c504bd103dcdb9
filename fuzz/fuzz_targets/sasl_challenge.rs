//! The base64 JSON error challenge an IMAP/SMTP server sends when it rejects a bearer token
//! (RFC 7628 §3.2.2), read from the upstream connection.
//!
//! Contract: never panics; the input is lossy UTF-8, as a line from the wire would be.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenlib::sasl::decode_error_challenge;

fuzz_target!(|data: &[u8]| {
    let challenge = String::from_utf8_lossy(data);
    if let Some(decoded) = decode_error_challenge(&challenge) {
        let _ = format!("{decoded:?}");
    }
});
