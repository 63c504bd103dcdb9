//! The HTTP side of OAuth: token requests (every grant), device authorization and OIDC discovery.
//!
//! One `reqwest` client, redirects off (a token request must never be replayed to another host),
//! bounded timeouts, and errors that keep what the provider said (`error`, `error_description`)
//! but never a response body that could hold a token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::account::Account;
use crate::provider::{Endpoints, PartialEndpoints, check_endpoint};
use crate::token::TokenResponse;

/// What a provider answered with an RFC 6749 §5.2 error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub http_status: u16,
    /// The `error` code (`invalid_grant`, `invalid_client`, `authorization_pending`, …).
    pub error: String,
    /// The provider's own words, e.g. Microsoft's `AADSTS70000: …`.
    pub description: Option<String>,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(d) = &self.description {
            // Microsoft's descriptions end with trace and correlation ids on later lines; the first
            // line is the useful one.
            write!(f, ": {}", d.lines().next().unwrap_or(d).trim())?;
        }
        Ok(())
    }
}

impl ProviderError {
    /// `invalid_grant`-class errors: the refresh token (or consent) is gone and only a new
    /// authorization helps. Microsoft adds `interaction_required` (MFA, conditional access) and
    /// `consent_required`; OIDC adds `login_required`.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(
            self.error.as_str(),
            "invalid_grant" | "interaction_required" | "consent_required" | "login_required"
        )
    }

    /// Errors worth retrying later (the provider's side is struggling).
    pub fn is_transient(&self) -> bool {
        self.http_status >= 500
            || self.http_status == 429
            || matches!(
                self.error.as_str(),
                "temporarily_unavailable" | "server_error"
            )
    }
}

/// Why a request to an OAuth endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The provider answered with an OAuth error.
    #[error("the provider refused: {0}")]
    Provider(ProviderError),
    /// No usable answer: connection refused, DNS, TLS, timeout.
    #[error("could not reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// An HTTP error without an OAuth error object (a proxy's HTML page, a 502…).
    #[error("{endpoint} answered HTTP {status} without an OAuth error{hint}")]
    Http {
        endpoint: String,
        status: u16,
        hint: String,
    },
    /// A 2xx answer that is not what the protocol says it should be.
    #[error("{endpoint} gave an unusable answer: {detail}")]
    BadResponse { endpoint: String, detail: String },
    /// The request could not even be made (bad configuration).
    #[error("{0}")]
    Config(String),
}

impl EndpointError {
    /// True when trying again later may work; false when a person has to act.
    pub fn is_transient(&self) -> bool {
        match self {
            EndpointError::Provider(p) => p.is_transient(),
            EndpointError::Unreachable { .. } => true,
            EndpointError::Http { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            EndpointError::BadResponse { .. } | EndpointError::Config(_) => false,
        }
    }

    /// The provider error, if that is what this is.
    pub fn provider(&self) -> Option<&ProviderError> {
        match self {
            EndpointError::Provider(p) => Some(p),
            _ => None,
        }
    }
}

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    /// Google calls it `verification_url`.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub interval: Option<i64>,
    /// Microsoft's ready-made instruction for the user.
    #[serde(default)]
    pub message: Option<String>,
}

fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// The OIDC / RFC 8414 metadata fields we use.
#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
}

/// The HTTP client for OAuth endpoints.
#[derive(Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
}

impl OAuthHttp {
    /// Builds the client. Cheap enough per process, but not free (it loads trust anchors): the
    /// token fast path never builds one.
    pub fn new() -> Result<Self, EndpointError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("mailoauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EndpointError::Config(format!("cannot set up HTTPS: {e}")))?;
        Ok(OAuthHttp { client })
    }

    /// POSTs a token request and parses the answer.
    pub async fn token_request(
        &self,
        account: &Account,
        token_url: &Url,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, EndpointError> {
        let body = self.post_form(account, token_url, params).await?;
        TokenResponse::parse(&body).map_err(|detail| EndpointError::BadResponse {
            endpoint: endpoint_name(token_url),
            detail,
        })
    }

    /// Starts a device authorization (RFC 8628 §3.1).
    pub async fn device_authorization(
        &self,
        account: &Account,
        device_url: &Url,
    ) -> Result<DeviceAuthorization, EndpointError> {
        let scope = account.scope_param();
        let mut params = vec![];
        if !scope.is_empty() {
            params.push(("scope", scope.as_str()));
        }
        let body = self.post_form(account, device_url, &params).await?;
        serde_json::from_slice(&body).map_err(|e| EndpointError::BadResponse {
            endpoint: endpoint_name(device_url),
            detail: format!("not a device authorization response ({e})"),
        })
    }

    /// Fetches `<issuer>/.well-known/openid-configuration` and applies the user's overrides.
    pub async fn discover(
        &self,
        issuer: &Url,
        overrides: &PartialEndpoints,
    ) -> Result<Endpoints, EndpointError> {
        check_endpoint(issuer).map_err(EndpointError::Config)?;
        let base = issuer.as_str().trim_end_matches('/');
        let url = format!("{base}/.well-known/openid-configuration");
        let name = format!("the discovery document {url}");
        let (status, bytes) = self.fetch(&name, self.client.get(&url)).await?;
        if status != 200 {
            return Err(EndpointError::Http {
                endpoint: name,
                status,
                hint: "; check the issuer URL".into(),
            });
        }
        let meta: Metadata =
            serde_json::from_slice(&bytes).map_err(|e| EndpointError::BadResponse {
                endpoint: name.clone(),
                detail: format!("not OpenID provider metadata ({e})"),
            })?;
        if let Some(found) = &meta.issuer
            && found.trim_end_matches('/') != base
        {
            return Err(EndpointError::BadResponse {
                endpoint: name,
                detail: format!(
                    "it names issuer {found:?}, not {base:?} (OpenID Connect Discovery §4.3 requires them to match)"
                ),
            });
        }
        let parse = |field: &str, v: Option<String>| -> Result<Option<Url>, EndpointError> {
            v.map(|s| {
                let u = Url::parse(&s).map_err(|e| EndpointError::BadResponse {
                    endpoint: name.clone(),
                    detail: format!("{field} {s:?} is not a URL ({e})"),
                })?;
                check_endpoint(&u).map_err(EndpointError::Config)?;
                Ok(u)
            })
            .transpose()
        };
        let token = parse("token_endpoint", meta.token_endpoint)?;
        let discovered = Endpoints {
            authorize: parse("authorization_endpoint", meta.authorization_endpoint)?,
            device: parse(
                "device_authorization_endpoint",
                meta.device_authorization_endpoint,
            )?,
            token: match (token, &overrides.token) {
                (Some(t), _) => t,
                (None, Some(t)) => t.clone(),
                (None, None) => {
                    return Err(EndpointError::BadResponse {
                        endpoint: name,
                        detail: "it has no token_endpoint; set token_url in the account".into(),
                    });
                }
            },
        };
        Ok(overrides.over(discovered))
    }

    /// Sends a request and reads the whole answer; transport failures are `Unreachable`.
    async fn fetch(
        &self,
        name: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), EndpointError> {
        let unreachable = |e: reqwest::Error| EndpointError::Unreachable {
            endpoint: name.to_string(),
            detail: transport_detail(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok((status, body.to_vec()))
    }

    async fn post_form(
        &self,
        account: &Account,
        url: &Url,
        params: &[(&str, &str)],
    ) -> Result<Vec<u8>, EndpointError> {
        check_endpoint(url).map_err(EndpointError::Config)?;
        let name = endpoint_name(url);
        let secret = match &account.client_secret {
            Some(source) => Some(source.resolve().map_err(EndpointError::Config)?),
            None => None,
        };
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut request = self.client.post(url.clone());
        if account.client_auth_basic {
            // RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
            let id = form_encode(&account.client_id);
            let pw = secret.as_ref().map(|s| form_encode(s.expose_secret()));
            request = request.basic_auth(id, pw);
        } else {
            form.push(("client_id", account.client_id.as_str()));
            if let Some(s) = &secret {
                form.push(("client_secret", s.expose_secret()));
            }
        }
        let request = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let (status, body) = self.fetch(&name, request).await?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        match parse_provider_error(status, &body) {
            Some(err) => Err(EndpointError::Provider(err)),
            None => Err(EndpointError::Http {
                endpoint: name,
                status,
                hint: match status {
                    500.. => "; the provider is having trouble, try again later".into(),
                    404 => "; check the endpoint URL".into(),
                    _ => String::new(),
                },
            }),
        }
    }
}

/// Parses an RFC 6749 error object; `None` if the body is not one.
pub fn parse_provider_error(status: u16, body: &[u8]) -> Option<ProviderError> {
    #[derive(Deserialize)]
    struct Raw {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body).ok()?;
    Some(ProviderError {
        http_status: status,
        error: raw.error,
        description: raw.error_description,
    })
}

/// How an endpoint is named in errors: scheme, host and path; never a query string.
fn endpoint_name(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// A transport error without the URL reqwest would append (it may carry query parameters).
fn transport_detail(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    };
    let mut detail = what.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    detail
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_classes() {
        let e = parse_provider_error(400, br#"{"error":"invalid_grant","error_description":"AADSTS70000: The provided value for the 'code' parameter is not valid.\r\nTrace ID: x"}"#).unwrap();
        assert!(e.needs_reauthorization());
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "invalid_grant: AADSTS70000: The provided value for the 'code' parameter is not valid."
        );
        let e = parse_provider_error(503, br#"{"error":"temporarily_unavailable"}"#).unwrap();
        assert!(e.is_transient());
        assert!(parse_provider_error(502, b"<html>bad gateway</html>").is_none());
    }

    #[test]
    fn endpoint_names_drop_queries_and_credentials() {
        let u = Url::parse("https://user:pw@x.example/token?code=SECRET#frag").unwrap();
        assert_eq!(endpoint_name(&u), "https://x.example/token");
    }
}
