//! Tokens: the [`TokenSet`] an account holds, and lenient parsing of token-endpoint responses.
//!
//! Providers disagree on details that strict parsers trip over: `expires_in` arrives as a number,
//! as a string (`"3599"`), or not at all; `token_type` is `Bearer` or `bearer`; refresh responses
//! may or may not carry a new refresh token. Everything here accepts all of those.

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// Lifetime assumed when a token response has no usable `expires_in` (RFC 6749 makes it optional).
/// One hour is what Google and Microsoft issue; if a token really lives shorter, the upstream
/// rejects it and the proxy refreshes once and retries.
pub const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// The longest lifetime believed: a bigger `expires_in` (a broken or hostile endpoint) is capped
/// so that arithmetic on it cannot overflow and the token is still renewed now and then.
pub const MAX_LIFETIME_SECS: i64 = 366 * 24 * 3600;

/// A token is refreshed when less than this much of its life is left (proactive margin).
pub const REFRESH_MARGIN_SECS: i64 = 5 * 60;

/// Seconds since the Unix epoch, the only clock format this crate stores.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Which grant produced a token set; decides how it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Authorization code (loopback or paste) or device code: renewed with the refresh token.
    User,
    /// Client credentials (app-only): no refresh token; renewed by asking again.
    ClientCredentials,
}

/// The tokens of one account.
#[derive(Clone)]
pub struct TokenSet {
    /// The bearer token sent upstream.
    pub access_token: SecretString,
    /// When the access token stops working, in Unix seconds (computed from the request time).
    pub expires_at: i64,
    /// The long-lived token used to get new access tokens; `None` for client credentials.
    pub refresh_token: Option<SecretString>,
    /// When the current refresh token was issued (Unix seconds), to warn before it ages out.
    pub refresh_issued_at: Option<i64>,
    /// When the provider said the refresh token stops working (Google's
    /// `refresh_token_expires_in`, sent for apps in "Testing": 7 days), if it said.
    pub refresh_expires_at: Option<i64>,
    /// Scopes the provider granted, space-separated, if it said.
    pub scope: Option<String>,
    /// How these tokens were obtained.
    pub grant: Grant,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field(
                "access_token",
                &fingerprint(self.access_token.expose_secret()),
            )
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("refresh_issued_at", &self.refresh_issued_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("scope", &self.scope)
            .field("grant", &self.grant)
            .finish()
    }
}

impl TokenSet {
    /// Seconds of validity left at `now`.
    pub fn remaining(&self, now: i64) -> i64 {
        self.expires_at.saturating_sub(now)
    }

    /// True when the access token has more than the refresh margin left.
    pub fn is_fresh(&self, now: i64) -> bool {
        self.remaining(now) > REFRESH_MARGIN_SECS
    }

    /// True when the access token has not expired yet (it may be inside the margin).
    pub fn is_usable(&self, now: i64) -> bool {
        self.remaining(now) > 0
    }

    /// Merges a token-endpoint response into this set. A response without a refresh token keeps
    /// the old one (Google never rotates); one with a new refresh token replaces it (Microsoft
    /// rotates on every use).
    pub fn absorb(&mut self, response: TokenResponse, requested_at: i64) {
        let renewed = response.into_token_set(requested_at, self.grant);
        self.access_token = renewed.access_token;
        self.expires_at = renewed.expires_at;
        if renewed.refresh_token.is_some() {
            self.refresh_token = renewed.refresh_token;
            self.refresh_issued_at = renewed.refresh_issued_at;
            self.refresh_expires_at = renewed.refresh_expires_at;
        } else if renewed.refresh_expires_at.is_some() {
            self.refresh_expires_at = renewed.refresh_expires_at;
        }
        if renewed.scope.is_some() {
            self.scope = renewed.scope;
        }
    }
}

/// A successful token-endpoint response (RFC 6749 §5.1), parsed leniently.
#[derive(Deserialize)]
pub struct TokenResponse {
    access_token: SecretString,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    /// Google, for apps in "Testing": the refresh token's remaining life in seconds.
    #[serde(default, deserialize_with = "lenient_seconds")]
    refresh_token_expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    /// Parses a response body. Errors never contain the body (it holds tokens).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the token endpoint's answer is not a token response ({}, at line {} column {})",
                classify_json_error(&e),
                e.line(),
                e.column()
            )
        })?;
        if parsed.access_token.expose_secret().is_empty() {
            return Err("the token endpoint answered with an empty access_token".into());
        }
        if let Some(kind) = &parsed.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(format!(
                "the token endpoint issued a {kind:?} token; only Bearer tokens work for mail"
            ));
        }
        Ok(parsed)
    }

    /// Turns the response into a token set; `requested_at` is when the request was *sent*, so
    /// network latency eats into the margin rather than past the real expiry.
    pub fn into_token_set(self, requested_at: i64, grant: Grant) -> TokenSet {
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_LIFETIME_SECS)
            .min(MAX_LIFETIME_SECS);
        let refresh_issued_at = self.refresh_token.as_ref().map(|_| requested_at);
        let refresh_expires_at = self
            .refresh_token_expires_in
            .filter(|s| *s > 0)
            .map(|s| requested_at.saturating_add(s.min(MAX_LIFETIME_SECS)));
        TokenSet {
            access_token: self.access_token,
            expires_at: requested_at.saturating_add(lifetime),
            refresh_token: self.refresh_token.filter(|t| !t.expose_secret().is_empty()),
            refresh_issued_at,
            refresh_expires_at,
            scope: self.scope,
            grant,
        }
    }
}

fn classify_json_error(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "not JSON",
        Category::Data => "missing or mistyped fields",
        Category::Eof => "truncated JSON",
    }
}

/// Accepts `3599`, `"3599"`, `3599.0`, `null` or a missing field.
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    })
}

/// A short, non-reversible name for a secret, safe to log: the first 8 hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(secret.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> TokenResponse {
        TokenResponse::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn googles_refresh_token_expires_in_is_kept_and_survives_a_refresh_without_a_new_one() {
        // Google, app in "Testing": the refresh token lives 7 days.
        let mut t = parse(
            r#"{"access_token":"a","expires_in":3599,"refresh_token":"r","refresh_token_expires_in":604799}"#,
        )
        .into_token_set(1000, Grant::User);
        assert_eq!(t.refresh_expires_at, Some(1000 + 604_799));
        // A later refresh answer without a new refresh token keeps the announced end.
        t.absorb(parse(r#"{"access_token":"b","expires_in":3599}"#), 5000);
        assert_eq!(t.refresh_expires_at, Some(1000 + 604_799));
        // Providers that say nothing: nothing announced.
        let plain =
            parse(r#"{"access_token":"a","refresh_token":"r"}"#).into_token_set(1, Grant::User);
        assert_eq!(plain.refresh_expires_at, None);
    }

    #[test]
    fn expires_in_number_string_float_and_missing() {
        let t =
            parse(r#"{"access_token":"a","expires_in":3599}"#).into_token_set(1000, Grant::User);
        assert_eq!(t.expires_at, 4599);
        let t =
            parse(r#"{"access_token":"a","expires_in":"3599"}"#).into_token_set(1000, Grant::User);
        assert_eq!(t.expires_at, 4599);
        let t =
            parse(r#"{"access_token":"a","expires_in":60.5}"#).into_token_set(1000, Grant::User);
        assert_eq!(t.expires_at, 1060);
        let t = parse(r#"{"access_token":"a"}"#).into_token_set(1000, Grant::User);
        assert_eq!(t.expires_at, 1000 + DEFAULT_LIFETIME_SECS);
        let t = parse(r#"{"access_token":"a","expires_in":"soon"}"#).into_token_set(0, Grant::User);
        assert_eq!(t.expires_at, DEFAULT_LIFETIME_SECS);
    }

    #[test]
    fn absurd_lifetimes_are_capped_not_overflowed() {
        // Found by the token_response fuzz target (fuzz/regressions/token_response/).
        for body in [
            r#"{"access_token":"b","expires_in":77777777777777777775}"#,
            r#"{"access_token":"b","expires_in":9223372036854775807}"#,
            r#"{"access_token":"b","expires_in":"1e300"}"#,
        ] {
            let t = parse(body).into_token_set(1_700_000_000, Grant::User);
            assert_eq!(t.expires_at, 1_700_000_000 + MAX_LIFETIME_SECS, "{body}");
        }
        let t = parse(r#"{"access_token":"b","expires_in":60}"#)
            .into_token_set(i64::MAX - 5, Grant::User);
        assert_eq!(t.expires_at, i64::MAX);
        assert_eq!(t.remaining(i64::MIN), i64::MAX);
    }

    #[test]
    fn token_type_case_insensitive_and_non_bearer_refused() {
        parse(r#"{"access_token":"a","token_type":"bearer"}"#);
        let err = TokenResponse::parse(br#"{"access_token":"a","token_type":"mac"}"#).unwrap_err();
        assert!(err.contains("Bearer"), "{err}");
    }

    #[test]
    fn parse_error_never_echoes_the_body() {
        let err = TokenResponse::parse(br#"{"acces_token":"SECRET-VALUE"}"#).unwrap_err();
        assert!(!err.contains("SECRET-VALUE"), "{err}");
        let err = TokenResponse::parse(b"<html>SECRET-VALUE</html>").unwrap_err();
        assert!(!err.contains("SECRET-VALUE"), "{err}");
    }

    #[test]
    fn absorb_keeps_old_refresh_token_unless_rotated() {
        let mut set = parse(r#"{"access_token":"a1","refresh_token":"r1","expires_in":10}"#)
            .into_token_set(0, Grant::User);
        set.absorb(parse(r#"{"access_token":"a2","expires_in":10}"#), 100);
        assert_eq!(set.access_token.expose_secret(), "a2");
        assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "r1");
        assert_eq!(set.refresh_issued_at, Some(0));
        set.absorb(parse(r#"{"access_token":"a3","refresh_token":"r2"}"#), 200);
        assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "r2");
        assert_eq!(set.refresh_issued_at, Some(200));
    }

    #[test]
    fn freshness_uses_the_margin() {
        let t = parse(r#"{"access_token":"a","expires_in":600}"#).into_token_set(0, Grant::User);
        assert!(t.is_fresh(0));
        assert!(!t.is_fresh(301));
        assert!(t.is_usable(599));
        assert!(!t.is_usable(600));
    }

    #[test]
    fn debug_hides_tokens() {
        let t = parse(r#"{"access_token":"SECRET-A","refresh_token":"SECRET-R"}"#)
            .into_token_set(0, Grant::User);
        let shown = format!("{t:?} {:?}", parse(r#"{"access_token":"SECRET-A"}"#));
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
