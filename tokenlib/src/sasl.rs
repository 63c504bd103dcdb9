//! SASL payloads for bearer tokens: OAUTHBEARER (RFC 7628) and XOAUTH2 (Google/Microsoft), and
//! decoding of the JSON error a server sends as a challenge when it rejects a token.
//!
//! The payloads contain the bearer token, so they are built into [`SecretString`]s and never
//! logged (base64 is not redaction).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// The two SASL mechanisms that carry an OAuth2 bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 7628, the standard one.
    OAuthBearer,
    /// Google's and Microsoft's older, proprietary mechanism.
    XOAuth2,
}

impl Mechanism {
    /// The mechanism's name as sent on the wire (always upper case: Microsoft's SMTP compares it
    /// case-sensitively).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The reply a client owes the server after an error challenge, before the server sends its
    /// final failure: `AQ==` (a lone %x01) for OAUTHBEARER (RFC 7628 §3.2.3), an empty line for
    /// XOAUTH2 (Google's documentation).
    pub fn error_ack(self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "AQ==",
            Mechanism::XOAuth2 => "",
        }
    }
}

/// The raw (not yet base64-encoded) initial client response.
pub fn client_response(
    mechanism: Mechanism,
    user: &str,
    host: Option<(&str, u16)>,
    token: &SecretString,
) -> SecretString {
    let token = token.expose_secret();
    let raw = match mechanism {
        Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
        Mechanism::OAuthBearer => {
            let authzid = gs2_escape(user);
            let host = match host {
                Some((name, port)) => format!("host={name}\x01port={port}\x01"),
                None => String::new(),
            };
            format!("n,a={authzid},\x01{host}auth=Bearer {token}\x01\x01")
        }
    };
    SecretString::from(raw)
}

/// The base64 initial client response, ready to put on the wire.
pub fn encoded_client_response(
    mechanism: Mechanism,
    user: &str,
    host: Option<(&str, u16)>,
    token: &SecretString,
) -> SecretString {
    let raw = client_response(mechanism, user, host, token);
    SecretString::from(STANDARD.encode(raw.expose_secret().as_bytes()))
}

/// RFC 5801 saslname escaping: `,` becomes `=2C` and `=` becomes `=3D`.
fn gs2_escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// What a server said when it rejected a token, decoded from its challenge. Only the non-secret
/// fields are kept; the raw challenge never leaves this function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorChallenge {
    /// `status` (RFC 7628: `invalid_token`…; Google: HTTP-like `"400"`/`"401"`).
    pub status: Option<String>,
    /// The scope the server wanted, if it said.
    pub scope: Option<String>,
}

/// Decodes a base64 JSON error challenge. Returns `None` when the challenge is not base64 JSON
/// (any challenge after the token is still a failure; this is only for the log line).
pub fn decode_error_challenge(challenge_b64: &str) -> Option<ErrorChallenge> {
    let bytes = STANDARD.decode(challenge_b64.trim()).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Some(ErrorChallenge {
        status: field("status"),
        scope: field("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> SecretString {
        SecretString::from("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")
    }

    #[test]
    fn xoauth2_matches_google_documentation() {
        let raw = client_response(
            Mechanism::XOAuth2,
            "someuser@example.com",
            None,
            &SecretString::from("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        );
        // The example from Google's "OAuth 2.0 Mechanism" page.
        assert_eq!(
            STANDARD.encode(raw.expose_secret()),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_matches_rfc7628_shape() {
        let raw = client_response(
            Mechanism::OAuthBearer,
            "user@example.com",
            Some(("server.example.com", 143)),
            &tok(),
        );
        assert_eq!(
            raw.expose_secret(),
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        // RFC 7628 §4.1's IMAP example, base64 of the same string.
        assert_eq!(
            encoded_client_response(
                Mechanism::OAuthBearer,
                "user@example.com",
                Some(("server.example.com", 143)),
                &tok()
            )
            .expose_secret(),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
    }

    #[test]
    fn oauthbearer_escapes_authzid_and_omits_host() {
        let raw = client_response(Mechanism::OAuthBearer, "a,b=c", None, &tok());
        assert!(
            raw.expose_secret()
                .starts_with("n,a=a=2Cb=3Dc,\x01auth=Bearer ")
        );
    }

    #[test]
    fn decodes_error_challenges() {
        let google = STANDARD
            .encode(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#);
        assert_eq!(
            decode_error_challenge(&google),
            Some(ErrorChallenge {
                status: Some("400".into()),
                scope: Some("https://mail.google.com/".into())
            })
        );
        assert_eq!(decode_error_challenge("!!"), None);
        assert_eq!(decode_error_challenge(&STANDARD.encode("not json")), None);
        assert_eq!(Mechanism::OAuthBearer.error_ack(), "AQ==");
        assert_eq!(
            STANDARD.decode(Mechanism::OAuthBearer.error_ack()).unwrap(),
            b"\x01"
        );
    }
}
