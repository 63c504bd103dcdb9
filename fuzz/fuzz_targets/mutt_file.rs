//! A mutt_oauth2.py token file, which mailoauth reads and rewrites in place.
//!
//! Contract: `decode` never panics; whatever it accepts, `encode` writes back over the same file
//! (keeping its other fields), and that decodes again to the same access token, refresh token
//! and expiry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use serde_json::Map;
use tokenlib::store::mutt::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(set)) = decode(data) else {
        return;
    };
    let written =
        encode(Some(data), &Map::new(), &set).expect("a file that decodes can be written back");
    let again = decode(&written)
        .expect("what encode wrote decodes")
        .expect("what encode wrote still holds tokens");
    assert_eq!(
        again.access_token.expose_secret(),
        set.access_token.expose_secret()
    );
    assert_eq!(
        again.expires_at, set.expires_at,
        "expiry changed in a round trip"
    );
    assert_eq!(
        again
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_string()),
        set.refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_string())
    );
});
