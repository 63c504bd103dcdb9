//! A token endpoint's response body (RFC 6749 §5.1), parsed leniently, then turned into the
//! token set that gets stored.
//!
//! Contract: never panics (debug assertions are on under `cargo fuzz`, so arithmetic overflow
//! counts), and a token set built from a successful parse expires after the moment it was
//! requested.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenlib::token::{Grant, TokenResponse};

/// A fixed "now" (2023-11-14), so that a finding reproduces whatever the clock says.
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = TokenResponse::parse(data) else {
        return;
    };
    let _ = format!("{response:?}");
    let set = response.into_token_set(NOW, Grant::User);
    let _ = format!("{set:?}");
    assert!(
        set.expires_at > NOW,
        "a new token set expires at {} (requested at {NOW})",
        set.expires_at
    );
});
