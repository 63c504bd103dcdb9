//! The mutt_oauth2.py token file format, so that mailoauth can work on an existing file in place
//! (and import it): a JSON object with `access_token`, `access_token_expiration` (naive local
//! time in ISO 8601, as Python's `datetime.now().isoformat()` writes it), `refresh_token`, and the
//! script's own `registration`, `authflow` and `email`, which are preserved untouched.

use chrono::{Local, NaiveDateTime, TimeZone};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::token::{Grant, TokenSet};

/// Decodes a token file. `Ok(None)`: the file exists but holds no tokens yet (the script writes
/// such a file before its first authorization).
pub fn decode(plain: &[u8]) -> Result<Option<TokenSet>, String> {
    let value: Value = serde_json::from_slice(plain).map_err(|e| {
        format!(
            "not a mutt_oauth2.py token file (JSON error at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let map = value
        .as_object()
        .ok_or("not a mutt_oauth2.py token file (not a JSON object)")?;
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
    let access = text("access_token");
    let refresh = text("refresh_token");
    if access.is_empty() && refresh.is_empty() {
        return Ok(None);
    }
    let expires_at = parse_expiration(text("access_token_expiration"))?;
    Ok(Some(TokenSet {
        access_token: SecretString::from(access.to_string()),
        expires_at,
        refresh_token: (!refresh.is_empty()).then(|| SecretString::from(refresh.to_string())),
        refresh_issued_at: None,
        refresh_expires_at: None,
        scope: None,
        grant: Grant::User,
    }))
}

/// Encodes `tokens` into the file's JSON, keeping every other field of `existing` (or starting
/// from `defaults` for a new file).
pub fn encode(
    existing: Option<&[u8]>,
    defaults: &Map<String, Value>,
    tokens: &TokenSet,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut map = match existing {
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => m,
            _ => return Err("not a mutt_oauth2.py token file; refusing to overwrite it".into()),
        },
        None => defaults.clone(),
    };
    map.insert(
        "access_token".into(),
        Value::String(tokens.access_token.expose_secret().to_string()),
    );
    map.insert(
        "access_token_expiration".into(),
        Value::String(format_expiration(tokens.expires_at)),
    );
    if let Some(refresh) = &tokens.refresh_token {
        map.insert(
            "refresh_token".into(),
            Value::String(refresh.expose_secret().to_string()),
        );
    } else {
        map.entry("refresh_token")
            .or_insert(Value::String(String::new()));
    }
    let bytes = serde_json::to_vec(&Value::Object(map)).expect("JSON serializes");
    Ok(Zeroizing::new(bytes))
}

/// Parses the script's naive local timestamp; empty means "no valid token".
fn parse_expiration(text: &str) -> Result<i64, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| format!("access_token_expiration {text:?} is not an ISO 8601 local time"))?;
    // An ambiguous local time (the hour repeated at a DST change) resolves to the earlier one.
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| {
            format!("access_token_expiration {text:?} does not exist in the local time zone")
        })
}

fn format_expiration(unix: i64) -> String {
    Local
        .timestamp_opt(unix, 0)
        .single()
        .map(|t| t.naive_local().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_script_file() {
        let f = br#"{"registration": "google", "authflow": "authcode", "email": "me@gmail.com", "access_token": "ya29.A", "access_token_expiration": "2030-01-02T03:04:05.678901", "refresh_token": "1//R"}"#;
        let t = decode(f).unwrap().unwrap();
        assert_eq!(t.access_token.expose_secret(), "ya29.A");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "1//R");
        let expected = Local
            .with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
            .unwrap()
            .timestamp();
        assert_eq!(t.expires_at, expected);
    }

    #[test]
    fn empty_file_means_not_authorized() {
        let f = br#"{"registration": "google", "authflow": "authcode", "email": "x", "access_token": "", "access_token_expiration": "", "refresh_token": ""}"#;
        assert!(decode(f).unwrap().is_none());
        assert!(decode(b"[1]").is_err());
        assert!(decode(br#"{"access_token":"a","access_token_expiration":"tomorrow"}"#).is_err());
    }

    #[test]
    fn encode_keeps_other_fields_and_round_trips() {
        let f = br#"{"registration": "microsoft", "authflow": "devicecode", "email": "me@x", "access_token": "old", "access_token_expiration": "", "refresh_token": "R1", "extra": 7}"#;
        let t = TokenSet {
            access_token: SecretString::from("new"),
            expires_at: 1_900_000_000,
            refresh_token: None,
            refresh_issued_at: None,
            refresh_expires_at: None,
            scope: None,
            grant: Grant::User,
        };
        let out = encode(Some(f), &Map::new(), &t).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["registration"], "microsoft");
        assert_eq!(v["extra"], 7);
        assert_eq!(
            v["refresh_token"], "R1",
            "no new refresh token keeps the old one"
        );
        let back = decode(&out).unwrap().unwrap();
        assert_eq!(back.access_token.expose_secret(), "new");
        assert_eq!(back.expires_at, 1_900_000_000);
        assert!(encode(Some(b"garbage"), &Map::new(), &t).is_err());
    }
}
